"""Reading interactions from Parquet, one row group at a time.

Columns are found by name as in text logs (USER_NAMES, ITEM_NAMES, TIMESTAMP_NAMES) or given
as names or 0-based positions. Ids may be integer or string columns. A list-typed item column
contains one row's item sequence, as in the item-list-column text format. Timestamps may be
numeric, Arrow timestamp or date columns (converted to seconds), or strings holding numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.readers.assemble import Batch, ReadStats
from core.readers.detect import (
    ITEM_LIST_NAMES,
    ITEM_NAMES,
    TIMESTAMP_NAMES,
    USER_NAMES,
    normalize_name,
)
from core.readers.errors import InteractionLogError, LimitExceededError
from core.readers.options import ReadLimits, ReadOptions

BATCH_ROWS = 1 << 20
_SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class ParquetReader:
    """Resolve the columns of a Parquet file and yield its rows as batches."""

    def __init__(
        self, file: BinaryIO, options: ReadOptions, limits: ReadLimits, file_bytes: int
    ) -> None:
        try:
            self._file = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as error:
            raise InteractionLogError(f"invalid Parquet file: {error}") from error
        self._limits = limits
        self._file_bytes = max(file_bytes, 1)
        schema = self._file.schema_arrow
        names = tuple(schema.names)
        self.user = _resolve(options.user_column, "user", names, USER_NAMES)
        self.item = _resolve(options.item_column, "item", names, ITEM_NAMES + ITEM_LIST_NAMES)
        if self.item == self.user:
            raise InteractionLogError(
                "the user and item columns are the same column", column=self.user
            )
        _check_id_type(schema, self.user, "user")
        self._item_is_list = _check_id_type(schema, self.item, "item")

        self.timestamp = None
        if self._item_is_list:
            if options.timestamp_column not in (None, False):
                raise InteractionLogError(
                    "a list-typed item column keeps each row's order; it takes no timestamp column",
                    column=self.item,
                )
        elif options.timestamp_column is not False:
            self.timestamp = _resolve(
                options.timestamp_column, "timestamp", names, TIMESTAMP_NAMES, required=False
            )

    def describe(self) -> dict[str, object]:
        return {
            "format": "parquet",
            "separator": None,
            "header": None,
            "user_column": self.user,
            "item_column": self.item,
            "timestamp_column": self.timestamp,
        }

    def batches(
        self, stats: ReadStats, drop_invalid: bool, on_progress: Callable[[int], None]
    ) -> Iterator[Batch]:
        """Yield batches of up to BATCH_ROWS rows; row numbers in errors are 1-based.

        The limits are checked against each row group's uncompressed size before it is read,
        and on_progress gets the compressed bytes of the row groups read so far.
        """
        metadata = self._file.metadata
        columns = [name for name in (self.user, self.item, self.timestamp) if name is not None]
        uncompressed = 0
        compressed = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            uncompressed += row_group.total_byte_size
            compressed += sum(
                row_group.column(index).total_compressed_size
                for index in range(row_group.num_columns)
            )
            self._check_sizes(uncompressed)
            record_batches = self._file.iter_batches(
                BATCH_ROWS, row_groups=[group], columns=columns
            )
            for record_batch in record_batches:
                first_row = stats.rows_read + 1
                stats.rows_read += record_batch.num_rows
                yield self._to_batch(record_batch, first_row, stats, drop_invalid)
            on_progress(min(compressed, self._file_bytes))

    def _check_sizes(self, uncompressed: int) -> None:
        maximum = self._limits.max_decompressed_bytes
        if maximum is not None and uncompressed > maximum:
            raise LimitExceededError(
                "max_decompressed_bytes",
                maximum,
                f"the row groups hold more than {maximum} bytes uncompressed",
            )
        ratio = self._limits.max_compression_ratio
        if ratio is not None and uncompressed > ratio * self._file_bytes:
            raise LimitExceededError(
                "max_compression_ratio",
                ratio,
                f"a {self._file_bytes}-byte file contains {uncompressed} bytes uncompressed",
            )

    def _to_batch(
        self, record_batch: pa.RecordBatch, first_row: int, stats: ReadStats, drop_invalid: bool
    ) -> Batch:
        users = _as_strings(record_batch.column(self.user))
        item_column = record_batch.column(self.item)
        if self._item_is_list:
            lengths = pc.fill_null(pc.list_value_length(item_column), 0)
            lengths = lengths.to_numpy(zero_copy_only=False)
            item_values = _as_strings(pc.list_flatten(item_column))
            value_rows = np.repeat(np.arange(len(users)), lengths)
            missing_items = _is_missing(item_values)
            empty_items = np.bincount(value_rows, weights=missing_items, minlength=len(users)) > 0
            invalid = _is_missing(users) | empty_items | (lengths == 0)
        else:
            item_values = _as_strings(item_column)
            value_rows = np.arange(len(users))
            invalid = _is_missing(users) | _is_missing(item_values)

        keep = ~invalid
        if invalid.any():
            first_bad = int(np.flatnonzero(invalid)[0])
            if not drop_invalid:
                raise self._empty_id_error(users, first_bad, first_row)
            stats.count_dropped(int(invalid.sum()), first_row + first_bad)

        timestamps = None
        if self.timestamp is not None:
            column = record_batch.column(self.timestamp)
            timestamps = _timestamps_in_seconds(column, self.timestamp, keep, first_row)[keep]
        selected = keep[value_rows]
        return Batch(
            users.take(pa.array(value_rows[selected])),
            item_values.filter(pa.array(selected)),
            timestamps,
        )

    def _empty_id_error(self, users: pa.Array, row: int, first_row: int) -> InteractionLogError:
        role, column = ("user", self.user) if _is_missing(users)[row] else ("item", self.item)
        return InteractionLogError(
            f"empty or null {role} id in row {first_row + row}; "
            "pass drop_invalid to drop such rows",
            column=column,
        )


def _check_id_type(schema: pa.Schema, name: str, role: str) -> bool:
    """Check that a column contains integer or string ids; return whether it is a list of them."""
    kind = schema.field(name).type
    is_list = role == "item" and (pa.types.is_list(kind) or pa.types.is_large_list(kind))
    if is_list:
        kind = kind.value_type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        raise InteractionLogError(
            f"the {role} column has type {kind}; ids must be integers or strings", column=name
        )
    return is_list


def _resolve(
    reference: str | int | None,
    role: str,
    names: tuple[str, ...],
    known: tuple[str, ...],
    required: bool = True,
) -> str | None:
    if isinstance(reference, int):
        if reference >= len(names):
            raise InteractionLogError(
                f"{role} column position {reference} is out of range: "
                f"the file has {len(names)} columns",
                column=reference,
            )
        return names[reference]
    normalized = [normalize_name(name) for name in names]
    if isinstance(reference, str):
        if reference in names:
            return reference
        if normalize_name(reference) in normalized:
            return names[normalized.index(normalize_name(reference))]
        raise InteractionLogError(
            f"{role} column {reference!r} not found; the file has {', '.join(names)}",
            column=reference,
        )
    for name in known:
        if name in normalized:
            return names[normalized.index(name)]
    if not required:
        return None
    raise InteractionLogError(
        f"no {role} column found among {', '.join(names)}; pass {role}_column"
    )


def _as_strings(column: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.utf8_trim_whitespace(column)


def _is_missing(strings: pa.Array) -> np.ndarray:
    empty = pc.equal(pc.binary_length(strings), 0)
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False)


def _timestamps_in_seconds(
    column: pa.Array, name: str, keep: np.ndarray, first_row: int
) -> np.ndarray:
    """Convert a timestamp column to float64 seconds; rows not kept may hold anything."""
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_date(kind):
            column, kind = pc.cast(column, pa.timestamp("s")), pa.timestamp("s")
        ticks = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        values = ticks.astype(np.float64) * _SECONDS_PER_UNIT[kind.unit]
    else:
        try:
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = _parse_number_strings(column, name, keep, first_row)
    if column.null_count:
        values = np.where(pc.is_null(column).to_numpy(zero_copy_only=False), np.nan, values)
    bad = ~np.isfinite(values) & keep
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = column[row].as_py()
        reason = "missing timestamp" if value is None else "the timestamp is not a finite number"
        raise InteractionLogError(
            f"{reason} in row {first_row + row}",
            column=name,
            value=None if value is None else str(value),
        )
    return values


def _parse_number_strings(
    column: pa.Array, name: str, keep: np.ndarray, first_row: int
) -> np.ndarray:
    values = np.full(len(column), np.nan)
    for row, value in enumerate(column.to_pylist()):
        try:
            values[row] = float(value) if value is not None else np.nan
        except (TypeError, ValueError):
            if keep[row]:
                raise InteractionLogError(
                    f"the timestamp is not a number in row {first_row + row}",
                    column=name,
                    value=str(value),
                ) from None
    return values
