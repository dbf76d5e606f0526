"""The typer application that `perflaw` runs."""

from __future__ import annotations

import sys
import traceback

import typer

from app.cli import analysis, calibrate, service, training
from app.cli.output import EXIT_SERVER_ERROR
from app.runtime import prefer_passive_thread_waits

app = typer.Typer(
    name="perflaw",
    help="Predict sequential-recommender quality from the Performance Law and data entropy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
service.register(app)
analysis.register(app)
training.register(app)
calibrate.register(app)


def main() -> None:
    """Run the command line; an unexpected error prints its traceback and exits with code 3."""
    prefer_passive_thread_waits()
    try:
        app()
    except Exception:
        traceback.print_exc()
        print("error: internal error (traceback above); please report it", file=sys.stderr)
        sys.exit(EXIT_SERVER_ERROR)
