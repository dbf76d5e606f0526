"""Human-readable output of the CLI (rich tables); --json bypasses all of it."""

from __future__ import annotations

from rich.table import Table

from app.cli.output import stdout


def _format_number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_profile(document: dict) -> None:
    dataset = document.get("dataset", {})
    profile = document["profile"]
    table = Table(title=f"profile of {dataset.get('name', 'dataset')}", show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("n_users", "n_items", "n_interactions", "rows_dropped"):
        if key in dataset:
            table.add_row(key, _format_number(dataset[key]))
    for key, value in profile.items():
        if key in dataset:
            continue
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                if not isinstance(inner_value, (dict, list)):
                    table.add_row(f"{key}.{inner_key}", _format_number(inner_value))
        elif not isinstance(value, list):
            table.add_row(key, _format_number(value))
    stdout.print(table)
    for warning in dataset.get("warnings", []):
        stdout.print(f"[yellow]warning:[/] {warning}")
