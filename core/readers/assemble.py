"""Turn parsed batches of (user, item, timestamp) into a SequenceDataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from core.dataset import SequenceDataset
from core.readers.errors import LimitExceededError
from core.readers.labels import LabelEncoder

# Rows per slice in the order checks, which keeps their temporary arrays small (4M rows).
CHECK_CHUNK_ROWS = 1 << 22


@dataclass(frozen=True)
class Batch:
    """Interactions parsed from one block, with invalid rows already removed.

    users and items are string arrays of equal length; timestamps is a float64 array of that
    length or None.
    """

    users: pa.Array
    items: pa.Array
    timestamps: np.ndarray | None


def order_interactions(user_codes: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray | None:
    """Return the permutation that sorts rows by user, then timestamp, ties in file order.

    Returns None when the rows are in that order already. Without timestamps, or with
    timestamps that never decrease over the file, a stable sort by user is enough.
    """
    users_grouped = _is_non_decreasing(user_codes)
    if timestamps is None or _is_non_decreasing(timestamps):
        return None if users_grouped else _stable_order(user_codes)
    if users_grouped and _is_sorted_within_users(user_codes, timestamps):
        return None
    by_time = np.argsort(timestamps, kind="stable")
    return by_time[_stable_order(user_codes[by_time])]


def _chunk_starts(n_rows: int) -> range:
    # The checks below work on slices of CHECK_CHUNK_ROWS + 1 rows (overlapping by one), so
    # their temporaries stay small next to the O(n_rows) arrays being checked.
    return range(0, max(n_rows - 1, 0), CHECK_CHUNK_ROWS)


def _is_non_decreasing(values: np.ndarray) -> bool:
    for start in _chunk_starts(len(values)):
        if np.any(np.diff(values[start : start + CHECK_CHUNK_ROWS + 1]) < 0):
            return False
    return True


def _is_sorted_within_users(user_codes: np.ndarray, timestamps: np.ndarray) -> bool:
    """Check that timestamps never decrease between consecutive rows of one user."""
    for start in _chunk_starts(len(user_codes)):
        window = slice(start, start + CHECK_CHUNK_ROWS + 1)
        same_user = np.diff(user_codes[window]) == 0
        if np.any(same_user & (np.diff(timestamps[window]) < 0)):
            return False
    return True


def _stable_order(keys: np.ndarray) -> np.ndarray:
    # Sorting (key << 32 | row) as one int64 is a stable argsort. It took 0.35 s against
    # 1.4 s for np.argsort(kind="stable") on 10M int32 keys (NumPy 2.4, 2-core AMD EPYC).
    n_rows = len(keys)
    if n_rows >= 1 << 32:
        return np.argsort(keys, kind="stable")
    packed = keys.astype(np.int64)
    packed <<= 32
    for start in range(0, n_rows, CHECK_CHUNK_ROWS):
        stop = min(start + CHECK_CHUNK_ROWS, n_rows)
        packed[start:stop] |= np.arange(start, stop, dtype=np.int64)
    packed.sort()
    packed &= 0xFFFFFFFF
    return packed


@dataclass
class ReadStats:
    """Row counts of a read; first_dropped_line is a line number, or a row number for Parquet."""

    rows_read: int = 0
    rows_dropped: int = 0
    first_dropped_line: int | None = None

    def count_dropped(self, count: int, first_line: int) -> None:
        self.rows_dropped += count
        if self.first_dropped_line is None:
            self.first_dropped_line = first_line


class DatasetBuilder:
    """Collect batches and build the SequenceDataset, checking the count limits as it goes."""

    def __init__(
        self, *, max_users: int | None, max_items: int | None, max_interactions: int | None
    ) -> None:
        self._users = LabelEncoder("max_users", max_users, "users")
        self._items = LabelEncoder("max_items", max_items, "items")
        self._timestamps: list[np.ndarray] = []
        self._max_interactions = max_interactions
        self.n_interactions = 0

    def add(self, batch: Batch) -> None:
        self.n_interactions += len(batch.items)
        if self._max_interactions is not None and self.n_interactions > self._max_interactions:
            raise LimitExceededError(
                "max_interactions",
                self._max_interactions,
                f"the log has more than {self._max_interactions} interactions",
            )
        self._users.add(batch.users)
        self._items.add(batch.items)
        if batch.timestamps is not None:
            self._timestamps.append(batch.timestamps)

    def build(self) -> SequenceDataset:
        user_codes, user_labels = self._users.finish()
        item_codes, item_labels = self._items.finish()
        timestamps = np.concatenate(self._timestamps) if self._timestamps else None
        self._timestamps = []
        order = order_interactions(user_codes, timestamps)
        offsets = np.zeros(len(user_labels) + 1, dtype=np.int64)
        np.cumsum(np.bincount(user_codes, minlength=len(user_labels)), out=offsets[1:])
        del user_codes
        if order is not None:
            item_codes = item_codes[order]
            timestamps = timestamps[order] if timestamps is not None else None
            del order
        items = item_codes.astype(np.int64)
        del item_codes
        items += 1
        return SequenceDataset(
            items=items,
            offsets=offsets,
            user_labels=user_labels,
            item_labels=item_labels,
            timestamps=timestamps,
        )
