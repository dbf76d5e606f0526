"""The offline side of the CLI: the same work as the server, on local files."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.cli.output import EXIT_BAD_INPUT, byte_progress, fail
from app.dataset_service import data_term_of, dataset_limits
from app.law_service import (
    LawRequestError,
    fit_from_records,
    law_profile_params,
    law_summary,
    load_reference_law,
)
from app.settings import get_settings
from core.fitting import FittedLaw, LawFitError
from core.profile import ProfileParams, profile_dataset
from core.readers import (
    InteractionLogError,
    LimitExceededError,
    ReadOptions,
    parse_column_text,
    parse_timestamp_column_text,
    read_interactions,
)
from core.runs_file import RunsFileError, read_runs


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
            user_column=parse_column_text(self.user_column),
            item_column=parse_column_text(self.item_column),
            timestamp_column=parse_timestamp_column_text(self.timestamp_column),
            drop_invalid=self.drop_invalid,
        )


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


def data_for_file(path: Path, arguments: ReadArguments, max_len: int, *, show_progress: bool) -> dict:
    """Return D' (with tokens, ApEn and the settings behind it), the item count and the read warnings of a local log."""
    result = read_file(path, arguments, show_progress=show_progress)
    params = law_profile_params(max_len)
    try:
        profile = profile_dataset(result.dataset, params).to_dict()
    except ValueError as error:
        fail(str(error))
    tokens, apen, d_prime = data_term_of(profile)
    if d_prime <= 0:
        fail(f"{path}: D' = {d_prime:g}; the law needs D' > 0 (sequences of at least 3 items)")
    return {
        "dataset": path.name, "n_items": result.dataset.n_items, "tokens": tokens, "apen": apen, "d_prime": d_prime,
        "apen_variant": params.variant, "m": params.m, "r": params.r, "max_len": params.max_len,
        "warnings": list(result.warnings),
    }


def load_law(choice: str | None, metric: str) -> tuple[FittedLaw, dict]:
    """Return the law named on the command line: a law.json file, or `reference` (the default)."""
    if choice in (None, "reference"):
        reference = load_reference_law(metric.lower())
        if reference is None:
            fail(f"no reference law is shipped for {metric}; fit one with `perflaw fit RUNS.csv --output law.json` and pass --law law.json")
        description = {"source": "reference", "protocol": reference.protocol, "arch": reference.arch,
                       "published_error": reference.published_error, **law_summary(reference.law)}
        return reference.law, description
    path = Path(choice)
    if choice.isdigit():
        fail(f"--law {choice} is a law id, which needs --server; offline, pass a law file or `reference`")
    if not path.is_file():
        fail(f"law file not found: {path}")
    try:
        law = FittedLaw.from_dict(json.loads(path.read_text()))
    except (ValueError, LawFitError) as error:
        fail(f"{path} is not a law written by `perflaw fit --output`: {error}")
    if law.metric != metric.lower():
        fail(f"the law in {path} predicts {law.metric}, not {metric}; pass --metric {law.metric}")
    return law, {"source": "file", "path": str(path), **law_summary(law)}


def fit_runs_file(path: Path, metric: str, *, form: str, protocol: str | None, arch: str | None,
                  dataset: str | None, seed: int, n_bootstrap: int) -> FittedLaw:
    if not path.is_file():
        fail(f"runs file not found: {path}")
    try:
        records = read_runs(path)
        return fit_from_records(records, metric, form=form, protocol=protocol, arch=arch, dataset=dataset,
                                seed=seed, n_bootstrap=n_bootstrap)
    except (RunsFileError, LawRequestError) as error:
        fail(f"{path}: {error}")
