"""Commands that analyse data and laws, offline on files or against a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli import client, offline
from app.cli.output import print_json
from app.cli.render import render_profile

FORMAT_HELP = "Log format: delimited, inter, sasrec, sequence-lines, item-list-column or parquet (default: detect)."

FileArgument = Annotated[Path, typer.Argument(help="Interaction log (any supported format, optionally compressed).")]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="PERFLAW_SERVER", help="Base URL of a perflaw server; the key comes from PERFLAW_API_KEY."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]


def profile(
    file: FileArgument,
    format: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    separator: Annotated[str | None, typer.Option(help="Field separator, e.g. ',' or '\\t' or '::'.")] = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="Whether the first line names the columns.")] = None,
    user_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the user (or session) column.")] = None,
    item_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the item column.")] = None,
    timestamp_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the timestamp column.")] = None,
    drop_invalid: Annotated[bool, typer.Option("--drop-invalid", help="Drop rows with an empty user or item and count them.")] = False,
    m: Annotated[int, typer.Option("--m", help="ApEn template length.")] = 2,
    r: Annotated[float, typer.Option("--r", help="ApEn tolerance; r < 1 matches item ids exactly.")] = 0.0,
    max_len: Annotated[int, typer.Option("--max-len", help="Keep each sequence's last max_len items; 0 keeps whole sequences.")] = 50,
    variant: Annotated[str, typer.Option(help="ApEn variant: pincus, reference or pooled.")] = "pincus",
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print a dataset's data-quality profile: ApEn and friends, tokens and D'."""
    read_options = offline.ReadArguments(
        format=format, separator=_unescape(separator), header=header, user_column=user_column,
        item_column=item_column, timestamp_column=timestamp_column, drop_invalid=drop_invalid,
    )
    profile_params = {"m": m, "r": r, "max_len": max_len, "variant": variant}
    if server:
        document = client.profile_file(server, file, read_options, profile_params, show_progress=not json_output)
    else:
        document = offline.profile_file(file, read_options, profile_params, show_progress=not json_output)
    if json_output:
        print_json(document)
    else:
        render_profile(document)


def _unescape(separator: str | None) -> str | None:
    """Turn a typed backslash-t into a tab, since shells pass it as two characters."""
    return separator.replace("\\t", "\t") if separator is not None else None


def register(app: typer.Typer) -> None:
    app.command()(profile)
