"""Reading and writing runs files: measured runs, one per row, as CSV or JSON Lines.

Columns (CSV header names, or JSON object keys):

    dataset        name of the dataset (required, non-empty)
    n_layers       transformer blocks (required, positive integer)
    d_model        hidden width (required, positive integer)
    n_heads        attention heads (required, positive integer)
    max_len        input window in items (required, positive integer)
    tokens         interactions counted by the law (positive integer)
    apen           Approximate Entropy of the dataset (finite, >= 0)
    d_prime        the data term D' = tokens x apen (positive); required unless both tokens
                   and apen are given, and when all three are given they must agree to 0.1%
    protocol       evaluation protocol: "full" or "sampled-<number of negatives>" (required)
    arch           "sasrec" (the default when absent) or "llama"
    seed           integer seed of the run
    train_time_s   training time in seconds (>= 0)
    <metric>@<K>   one column per measured metric, e.g. hr@10, ndcg@10, recall@20, and mrr;
                   a fraction in [0, 1], or empty (CSV) / null (JSON) when not measured

Column names are case-insensitive and stored in lower case. Any other column is rejected, so
a misspelt name cannot be dropped without notice. Blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.fitting import Observations
from core.sizing import ARCHITECTURES

RunsFormat = Literal["csv", "jsonl"]

REQUIRED_COLUMNS = ("dataset", "n_layers", "d_model", "n_heads", "max_len", "protocol")
OPTIONAL_COLUMNS = ("tokens", "apen", "d_prime", "arch", "seed", "train_time_s")
COLUMN_ORDER = ("dataset", "arch", "n_layers", "d_model", "n_heads", "max_len", "tokens",
                "apen", "d_prime", "protocol", "seed", "train_time_s")
"""Column order of written files; metric columns follow, sorted by name and K."""

METRIC_NAMES = ("hr", "ndcg", "recall", "precision", "mrr", "map")
_METRIC_PATTERN = re.compile(rf"^({'|'.join(METRIC_NAMES)})@[1-9][0-9]*$|^mrr$")
_PROTOCOL_PATTERN = re.compile(r"^(full|sampled-[1-9][0-9]*)$")
_D_PRIME_TOLERANCE = 1e-3


class RunsFileError(ValueError):
    """A runs file or a selection of runs is invalid.

    Attributes:
        line: 1-based line of the offending row, or None.
        column: the offending column, or None.
    """

    def __init__(self, message: str, *, line: int | None = None,
                 column: str | None = None) -> None:
        location = []
        if line is not None:
            location.append(f"line {line}")
        if column is not None:
            location.append(f"column {column!r}")
        super().__init__(f"{', '.join(location)}: {message}" if location else message)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class RunRecord:
    """One measured run, as read from or written to a runs file.

    d_prime is always set: read from its column, or computed as tokens x apen. metrics maps
    lower-case metric names (e.g. "ndcg@10") to fractions and holds only measured values.
    line is the source line, or None for runs not read from a file; it is not compared.
    """

    dataset: str
    n_layers: int
    d_model: int
    n_heads: int
    max_len: int
    d_prime: float
    protocol: str
    metrics: Mapping[str, float]
    tokens: int | None = None
    apen: float | None = None
    arch: str = "sasrec"
    seed: int | None = None
    train_time_s: float | None = None
    line: int | None = field(default=None, compare=False)


def is_metric_column(name: str) -> bool:
    """Return whether name is a metric column such as "hr@10", "ndcg@5" or "mrr"."""
    return _METRIC_PATTERN.match(name) is not None


def _metric_sort_key(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    return base, int(k) if k else 0


def _read_integer(value: Any, line: int, column: str, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise RunsFileError(f"expected an integer, got {value!r}", line=line, column=column)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RunsFileError(f"expected an integer, got {value!r}", line=line,
                            column=column) from None
    if not (math.isfinite(number) and number == int(number) and number >= minimum):
        raise RunsFileError(f"expected an integer >= {minimum}, got {value!r}", line=line,
                            column=column)
    return int(number)


def _read_float(value: Any, line: int, column: str, *, minimum: float = -math.inf,
                maximum: float = math.inf, positive: bool = False) -> float:
    if isinstance(value, bool):
        raise RunsFileError(f"expected a number, got {value!r}", line=line, column=column)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RunsFileError(f"expected a number, got {value!r}", line=line,
                            column=column) from None
    in_range = minimum <= number <= maximum and (number > 0 or not positive)
    if not (math.isfinite(number) and in_range):
        wanted = "a positive number" if positive else f"a number in [{minimum:g}, {maximum:g}]"
        raise RunsFileError(f"expected {wanted}, got {value!r}", line=line, column=column)
    return number


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _check_columns(columns: Sequence[str], line: int) -> None:
    seen = set()
    for column in columns:
        if column in seen:
            raise RunsFileError("duplicate column", line=line, column=column)
        seen.add(column)
        if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS and not is_metric_column(column):
            raise RunsFileError(
                f"unknown column; allowed are {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
                " and metrics named like hr@10, ndcg@10 or mrr", line=line, column=column)


def _read_d_prime(row: Mapping[str, Any], line: int) -> tuple[float, int | None, float | None]:
    tokens = apen = None
    if not _is_missing(row.get("tokens")):
        tokens = _read_integer(row["tokens"], line, "tokens", minimum=1)
    if not _is_missing(row.get("apen")):
        apen = _read_float(row["apen"], line, "apen", minimum=0.0)
    if _is_missing(row.get("d_prime")):
        if tokens is None or apen is None:
            raise RunsFileError("missing value; give d_prime, or both tokens and apen", line=line,
                                column="d_prime")
        d_prime = tokens * apen
        if d_prime <= 0:
            raise RunsFileError(f"d_prime = tokens x apen = {d_prime:g} must be positive",
                                line=line, column="apen")
        return d_prime, tokens, apen

    d_prime = _read_float(row["d_prime"], line, "d_prime", positive=True)
    if tokens is not None and apen is not None:
        computed = tokens * apen
        if abs(computed - d_prime) > _D_PRIME_TOLERANCE * d_prime:
            raise RunsFileError(
                f"d_prime {d_prime:g} differs from tokens x apen = {computed:g} by more than "
                f"{_D_PRIME_TOLERANCE:.1%}", line=line, column="d_prime")
    return d_prime, tokens, apen


def _read_text(row: Mapping[str, Any], column: str, line: int) -> str:
    value = row.get(column)
    if _is_missing(value):
        raise RunsFileError("missing value", line=line, column=column)
    return str(value).strip()


def parse_run(row: Mapping[str, Any], line: int) -> RunRecord:
    """Validate one row (lower-case column -> cell) and return its RunRecord.

    Raises:
        RunsFileError: a value is missing or invalid; the message names line and column.
    """
    for column in REQUIRED_COLUMNS:
        if _is_missing(row.get(column)):
            raise RunsFileError("missing value", line=line, column=column)
    sizes = {column: _read_integer(row[column], line, column, minimum=1)
             for column in ("n_layers", "d_model", "n_heads", "max_len")}
    if sizes["d_model"] % sizes["n_heads"]:
        raise RunsFileError(f"d_model {sizes['d_model']} is not a multiple of n_heads "
                            f"{sizes['n_heads']}", line=line, column="d_model")
    protocol = _read_text(row, "protocol", line).lower()
    if not _PROTOCOL_PATTERN.match(protocol):
        raise RunsFileError(f"protocol must be 'full' or 'sampled-<n>', got {protocol!r}",
                            line=line, column="protocol")
    arch = "sasrec" if _is_missing(row.get("arch")) else _read_text(row, "arch", line).lower()
    if arch not in ARCHITECTURES:
        raise RunsFileError(f"arch must be one of {ARCHITECTURES}, got {arch!r}", line=line,
                            column="arch")
    d_prime, tokens, apen = _read_d_prime(row, line)

    metrics = {}
    for column, value in row.items():
        if is_metric_column(column) and not _is_missing(value):
            metrics[column] = _read_float(value, line, column, minimum=0.0, maximum=1.0)
    seed = None if _is_missing(row.get("seed")) else _read_integer(
        row["seed"], line, "seed", minimum=0)
    train_time_s = None if _is_missing(row.get("train_time_s")) else _read_float(
        row["train_time_s"], line, "train_time_s", minimum=0.0)
    return RunRecord(dataset=_read_text(row, "dataset", line), **sizes, d_prime=d_prime,
                     protocol=protocol, metrics=metrics, tokens=tokens, apen=apen, arch=arch,
                     seed=seed, train_time_s=train_time_s, line=line)


def _parse_csv(text: str) -> list[RunRecord]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    runs = []
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            _check_columns(header, line)
            continue
        if len(cells) != len(header):
            raise RunsFileError(f"expected {len(header)} cells as in the header, "
                                f"got {len(cells)}", line=line)
        runs.append(parse_run(dict(zip(header, cells)), line))
    if header is None:
        raise RunsFileError("the runs file is empty; it needs a header row")
    return runs


def _parse_jsonl(text: str) -> list[RunRecord]:
    runs = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as error:
            raise RunsFileError(f"invalid JSON: {error.msg}", line=line) from None
        if not isinstance(row, dict):
            raise RunsFileError(f"expected a JSON object, got {type(row).__name__}", line=line)
        row = {str(key).strip().lower(): value for key, value in row.items()}
        _check_columns(list(row), line)
        runs.append(parse_run(row, line))
    return runs


def detect_format(text: str, name: str | None = None) -> RunsFormat:
    """Return "jsonl" for a .jsonl/.ndjson name or text starting with "{", else "csv"."""
    if name is not None:
        suffix = Path(name).suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if suffix in (".csv",):
            return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def parse_runs(text: str, *, format: RunsFormat | None = None,
               name: str | None = None) -> list[RunRecord]:
    """Parse the text of a runs file; format None detects it from name and content.

    Raises:
        RunsFileError: the format is unknown or a row is invalid.
    """
    text = text.removeprefix("\ufeff")
    chosen = format or detect_format(text, name)
    if chosen == "csv":
        return _parse_csv(text)
    if chosen == "jsonl":
        return _parse_jsonl(text)
    raise RunsFileError(f"format must be 'csv' or 'jsonl', got {format!r}")


def read_runs(path: str | Path, *, format: RunsFormat | None = None) -> list[RunRecord]:
    """Read a UTF-8 runs file (a leading byte-order mark is allowed)."""
    path = Path(path)
    return parse_runs(path.read_text(encoding="utf-8-sig"), format=format, name=path.name)


def _row(run: RunRecord) -> dict[str, Any]:
    row: dict[str, Any] = {column: getattr(run, column) for column in COLUMN_ORDER}
    row.update(run.metrics)
    return row


def format_runs(runs: Iterable[RunRecord], format: RunsFormat = "csv") -> str:
    """Return the text of a runs file holding runs; read_runs reads it back unchanged.

    Floats are written with repr, so they round-trip exactly; None becomes an empty CSV
    cell or a JSON null.
    """
    runs = list(runs)
    metric_columns = sorted({name for run in runs for name in run.metrics}, key=_metric_sort_key)
    columns = [*COLUMN_ORDER, *metric_columns]
    if format == "jsonl":
        return "".join(
            json.dumps({column: _row(run).get(column) for column in columns}) + "\n"
            for run in runs
        )
    if format != "csv":
        raise RunsFileError(f"format must be 'csv' or 'jsonl', got {format!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for run in runs:
        row = _row(run)
        writer.writerow(["" if row.get(column) is None else
                         repr(row[column]) if isinstance(row[column], float) else row[column]
                         for column in columns])
    return buffer.getvalue()


def write_runs(runs: Iterable[RunRecord], path: str | Path,
               format: RunsFormat | None = None) -> None:
    """Write runs to path; format None picks "jsonl" for .jsonl/.ndjson names, else "csv"."""
    path = Path(path)
    chosen = format or ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    path.write_text(format_runs(runs, chosen), encoding="utf-8")


def _describe(run: RunRecord, index: int) -> str:
    return f"line {run.line}" if run.line is not None else f"run {index}"


def select_observations(runs: Sequence[RunRecord], metric: str, *, protocol: str | None = None,
                        arch: str | None = None, dataset: str | None = None) -> Observations:
    """Return the observations of one metric, from runs of one protocol and architecture.

    Runs are first filtered by protocol, arch and dataset where given. The law is only
    meaningful for runs measured the same way, so if the remaining runs still mix protocols
    or architectures this raises rather than guess. Observation labels are the datasets.

    Raises:
        RunsFileError: no runs remain, they mix protocols or architectures, or some lack
            the metric (the message lists where).
    """
    metric = metric.strip().lower()
    if not is_metric_column(metric):
        raise RunsFileError(f"invalid metric name {metric!r}; use names like hr@10 or ndcg@10")
    selected = [(index, run) for index, run in enumerate(runs, start=1)
                if (protocol is None or run.protocol == protocol.lower())
                and (arch is None or run.arch == arch.lower())
                and (dataset is None or run.dataset == dataset)]
    if not selected:
        raise RunsFileError(f"no runs match protocol={protocol!r}, arch={arch!r}, "
                            f"dataset={dataset!r}")
    for attribute, plural in (("protocol", "protocols"), ("arch", "architectures")):
        values = sorted({getattr(run, attribute) for _, run in selected})
        if len(values) > 1:
            raise RunsFileError(
                f"the runs mix {plural} {', '.join(values)}; a law needs runs measured one "
                f"way, so pass {attribute}= to choose one"
            )
    missing = [_describe(run, index) for index, run in selected if metric not in run.metrics]
    if missing:
        shown = ", ".join(missing[:10]) + (" and more" if len(missing) > 10 else "")
        raise RunsFileError(f"{len(missing)} runs have no {metric} value ({shown}); "
                            "measure it, drop those runs or choose another metric")
    chosen = [run for _, run in selected]
    return Observations(
        n_layers=[run.n_layers for run in chosen],
        d_model=[run.d_model for run in chosen],
        d_prime=[run.d_prime for run in chosen],
        y=[run.metrics[metric] for run in chosen],
        labels=tuple(run.dataset for run in chosen),
    )
