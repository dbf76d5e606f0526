"""The `perflaw` command line: one typer application with a module per group of commands."""

from app.cli.main import main

__all__ = ["main"]
