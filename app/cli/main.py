"""The typer application that `perflaw` runs."""

from __future__ import annotations

import typer

from app.cli import analysis, service

app = typer.Typer(
    name="perflaw",
    help="Predict sequential-recommender quality from the Performance Law and data entropy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
service.register(app)
analysis.register(app)


def main() -> None:
    app()
