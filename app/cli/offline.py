"""The offline side of the CLI: the same work as the server, on local files."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.cli.output import EXIT_BAD_INPUT, byte_progress, fail
from app.dataset_service import dataset_limits
from app.settings import get_settings
from core.profile import ProfileParams, profile_dataset
from core.readers import InteractionLogError, LimitExceededError, ReadOptions, read_interactions


@dataclass(frozen=True)
class ReadArguments:
    """Read options as typed on the command line (columns as text)."""

    format: str | None = None
    separator: str | None = None
    header: bool | None = None
    user_column: str | None = None
    item_column: str | None = None
    timestamp_column: str | None = None
    drop_invalid: bool = False

    def query_params(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def to_read_options(self) -> ReadOptions:
        return ReadOptions(
            format=self.format,
            separator=self.separator,
            header=self.header,
            user_column=_column(self.user_column),
            item_column=_column(self.item_column),
            timestamp_column=_column(self.timestamp_column),
            drop_invalid=self.drop_invalid,
        )


def _column(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def read_file(path: Path, arguments: ReadArguments, *, show_progress: bool):
    """Parse a local log; bad input exits with code 2 and a message naming line, column and value."""
    if not path.is_file():
        fail(f"file not found: {path}")
    try:
        with byte_progress(f"reading {path.name}", path.stat().st_size if show_progress else None) as report:
            return read_interactions(
                path, arguments.to_read_options(), filename=path.name,
                limits=dataset_limits(get_settings()), on_progress=report if show_progress else None,
            )
    except (InteractionLogError, LimitExceededError, ValueError) as error:
        fail(f"{path}: {error}", EXIT_BAD_INPUT)


def parse_profile_params(values: dict) -> ProfileParams:
    try:
        return ProfileParams(
            m=values["m"], r=values["r"], max_len=values["max_len"] or None, variant=values["variant"]
        )
    except ValueError as error:
        fail(str(error))


def profile_file(path: Path, arguments: ReadArguments, values: dict, *, show_progress: bool) -> dict:
    """Return the profile document of a local file, shaped like the API's response."""
    params = parse_profile_params(values)
    result = read_file(path, arguments, show_progress=show_progress)
    started = time.perf_counter()
    try:
        profile = profile_dataset(result.dataset, params).to_dict()
    except ValueError as error:
        fail(str(error))
    return {
        "dataset": {
            "name": path.name,
            "n_users": result.dataset.n_users,
            "n_items": result.dataset.n_items,
            "n_interactions": result.dataset.n_interactions,
            "rows_dropped": result.rows_dropped,
            "detected": result.detected,
            "warnings": list(result.warnings),
        },
        "params": profile["params"],
        "profile": profile,
        "compute_s": round(time.perf_counter() - started, 6),
    }
