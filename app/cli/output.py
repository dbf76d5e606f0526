"""Shared command-line plumbing: exit codes, error printing, JSON output and progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SERVER_ERROR = 3

stderr = Console(stderr=True)
stdout = Console()


def fail(message: str, exit_code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `error: message` on stderr and exit with exit_code."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code)


def print_json(document: Any) -> None:
    """Write one JSON document on stdout and nothing else there."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


@contextmanager
def byte_progress(description: str, total_bytes: int | None) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking bytes done; a bar on a terminal, a line per 10% otherwise."""
    if stderr.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, console=stderr, transient=True) as progress:
            task = progress.add_task(description, total=total_bytes)
            yield lambda done: progress.update(task, completed=done)
        return

    last_tenth = [0]

    def report(done: int) -> None:
        tenth = int(10 * done / total_bytes) if total_bytes else 0
        if tenth > last_tenth[0]:
            print(f"{description}: {10 * tenth}%", file=sys.stderr, flush=True)
            last_tenth[0] = tenth

    yield report
