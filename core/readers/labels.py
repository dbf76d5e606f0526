"""Numbering of user and item labels in order of first appearance, batch by batch.

Each label is stored once, and each row only as an int32 code. Canonical non-negative integer
ids are numbered through a direct array; any other label through Arrow's hash tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.readers.errors import LimitExceededError

# Local dictionaries are merged into the global one once they hold MERGE_MIN_LABELS labels in
# all, or MERGE_GROWTH times as many as the global one if that is more. A merge hashes the
# global labels again, so each queued label costs at most 1 + 1/MERGE_GROWTH hash insertions.
MERGE_MIN_LABELS = 1 << 22
MERGE_GROWTH = 4
# Largest integer id numbered through a direct array (int32, so at most 128 MiB).
MAX_DIRECT_ID = (1 << 25) - 1
_POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)


class LabelEncoder:
    """Number string labels 0, 1, ... in order of first appearance across batches.

    While every label is a non-negative integer written without leading zeros and at most
    MAX_DIRECT_ID, codes come from an array indexed by the id instead of a hash table. That
    cut the CPU time of reading bench/bench_read.py's 10M-row log from 9.7 s to 4.8 s. The
    first other label moves the encoder to Arrow hash tables for good, and the codes given so
    far stay valid.
    """

    def __init__(self, limit_name: str, maximum: int | None, noun: str) -> None:
        self._limit_name = limit_name
        self._maximum = maximum
        self._noun = noun
        self._codes: list[np.ndarray] = []
        # Integer mode: code of each id (-1 for unseen), and the ids in code order.
        self._id_codes: np.ndarray | None = np.full(0, -1, dtype=np.int32)
        self._integer_labels: list[np.ndarray] = []
        self._n_integer_labels = 0
        # String mode: the labels in code order, and batches whose codes await a merge.
        self._labels = pa.array([], type=pa.string())
        self._pending: list[tuple[np.ndarray, pa.Array]] = []
        self._pending_labels = 0

    def add(self, values: pa.Array) -> None:
        """Encode one batch of labels (a string array without nulls)."""
        if self._id_codes is not None:
            ids = _integer_ids(values)
            if ids is not None:
                self._add_integer_ids(ids)
                return
            self._labels = pc.cast(pa.array(self._concatenated_integer_labels()), pa.string())
            self._id_codes = None
            self._integer_labels = []
        self._add_strings(values)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the int32 code of every label added, in order, and the labels as str."""
        if self._id_codes is not None:
            labels = self._concatenated_integer_labels().astype(str)
        else:
            self._merge()
            labels = np.asarray(self._labels.to_numpy(zero_copy_only=False), dtype=str)
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, dtype=np.int32)
        self._codes = []
        return codes, labels

    def _concatenated_integer_labels(self) -> np.ndarray:
        if not self._integer_labels:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self._integer_labels)

    def _add_integer_ids(self, ids: np.ndarray) -> None:
        if len(ids) and ids.max() >= len(self._id_codes):
            size = min(max(int(ids.max()) + 1, 2 * len(self._id_codes)), MAX_DIRECT_ID + 1)
            grown = np.full(size, -1, dtype=np.int32)
            grown[: len(self._id_codes)] = self._id_codes
            self._id_codes = grown
        codes = self._id_codes[ids]
        unseen = np.flatnonzero(codes < 0)
        if len(unseen):
            new_ids = self._number_unseen_ids(ids[unseen])
            self._check_limit(self._n_integer_labels)
            self._integer_labels.append(new_ids)
            codes[unseen] = self._id_codes[ids[unseen]]
        self._codes.append(codes)

    def _number_unseen_ids(self, unseen_ids: np.ndarray) -> np.ndarray:
        """Give new codes to unseen ids in order of first appearance; return those ids."""
        # Mark each unseen id's slot with -(first position) - 2 by an unbuffered maximum;
        # the positions whose own mark survived are the first appearances, in order.
        id_codes = self._id_codes
        marks = -np.arange(len(unseen_ids), dtype=np.int32) - 2
        id_codes[unseen_ids] = np.iinfo(np.int32).min
        np.maximum.at(id_codes, unseen_ids, marks)
        new_ids = unseen_ids[id_codes[unseen_ids] == marks]
        id_codes[new_ids] = np.arange(
            self._n_integer_labels, self._n_integer_labels + len(new_ids), dtype=np.int32
        )
        self._n_integer_labels += len(new_ids)
        return new_ids

    def _add_strings(self, values: pa.Array) -> None:
        encoded = pc.dictionary_encode(values)
        local_codes, local_labels = _in_first_appearance_order(
            encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary
        )
        self._check_limit(len(local_labels))
        self._pending.append((local_codes.astype(np.int32, copy=False), local_labels))
        self._pending_labels += len(local_labels)
        # The distinct count is exact only after a merge, so merge early when it may be over.
        may_exceed = (
            self._maximum is not None and len(self._labels) + self._pending_labels > self._maximum
        )
        if may_exceed or self._pending_labels >= max(
            MERGE_MIN_LABELS, MERGE_GROWTH * len(self._labels)
        ):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        combined = pa.concat_arrays([self._labels, *(labels for _, labels in self._pending)])
        encoded = pc.dictionary_encode(combined)
        combined_codes, self._labels = _in_first_appearance_order(
            encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary
        )
        self._check_limit(len(self._labels))
        start = len(combined) - self._pending_labels
        for local_codes, local_labels in self._pending:
            to_global = combined_codes[start : start + len(local_labels)].astype(np.int32)
            self._codes.append(to_global[local_codes])
            start += len(local_labels)
        self._pending = []
        self._pending_labels = 0

    def _check_limit(self, count: int) -> None:
        if self._maximum is not None and count > self._maximum:
            raise LimitExceededError(
                self._limit_name,
                self._maximum,
                f"the log has more than {self._maximum} {self._noun}",
            )


def _integer_ids(values: pa.Array) -> np.ndarray | None:
    """Return the labels as int64 ids if all are canonical integers up to MAX_DIRECT_ID.

    Returns None when any label is not, so the caller falls back to hashing strings.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        ids = pc.cast(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    array = ids.to_numpy(zero_copy_only=False)
    if array.min() < 0 or array.max() > MAX_DIRECT_ID:
        return None
    # "007" and "+7" cast to 7 but are other labels than "7": a canonical label has exactly
    # as many characters as its value has decimal digits.
    digits = np.searchsorted(_POWERS_OF_TEN, array, side="right") + 1
    if not np.array_equal(pc.binary_length(values).to_numpy(zero_copy_only=False), digits):
        return None
    return array


def _in_first_appearance_order(codes: np.ndarray, labels: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Renumber dictionary codes so that labels are listed in order of first appearance.

    Arrow's hash kernels (pyarrow 26) already number labels in that order. This checks it in
    O(n) and sorts only when it fails, so the result does not depend on that behaviour.
    """
    if len(codes) == 0:
        return codes, labels
    running_max = np.maximum.accumulate(codes)
    if (
        codes[0] == 0
        and running_max[-1] == len(labels) - 1
        and not np.any(np.diff(running_max) > 1)
    ):
        return codes, labels
    _, first_positions = np.unique(codes, return_index=True)
    order = np.argsort(first_positions, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return renumber[codes], labels.take(pa.array(order))
