"""The compact, parsed form of an interaction log.

A dataset stores every sequence back to back in one integer array and marks where each
sequence starts in a second array (CSR layout), so profiling and training never re-parse text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SequenceDataset:
    """Users' item sequences in time order, with ids re-indexed.

    Attributes:
        items: int64 array of shape (n_interactions,); re-indexed item ids in 1..n_items,
            the sequences concatenated in user order.
        offsets: int64 array of shape (n_users + 1,); sequence u is
            items[offsets[u]:offsets[u + 1]]. offsets[0] == 0 and offsets[-1] == len(items).
        user_labels: array of shape (n_users,) with the original user (or session) ids as str.
        item_labels: array of shape (n_items,) with the original item ids as str; re-indexed
            id k belongs to item_labels[k - 1].
        timestamps: float64 array parallel to items, or None when the log had none.
    """

    items: np.ndarray
    offsets: np.ndarray
    user_labels: np.ndarray
    item_labels: np.ndarray
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) != len(self.user_labels) + 1:
            raise ValueError(
                f"offsets must have n_users + 1 = {len(self.user_labels) + 1} entries, "
                f"got shape {self.offsets.shape}"
            )
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.items):
            raise ValueError("offsets must start at 0 and end at len(items)")
        if self.timestamps is not None and len(self.timestamps) != len(self.items):
            raise ValueError("timestamps must be parallel to items")

    @property
    def n_users(self) -> int:
        return len(self.user_labels)

    @property
    def n_items(self) -> int:
        return len(self.item_labels)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """Sequence lengths, int64 array of shape (n_users,)."""
        return np.diff(self.offsets)

    def sequence(self, user_index: int) -> np.ndarray:
        """Return the item ids of the user at 0-based position user_index."""
        return self.items[self.offsets[user_index] : self.offsets[user_index + 1]]

    def original_numeric_items(self) -> np.ndarray:
        """Return items mapped back to the ids as uploaded, as int64.

        Raises:
            ValueError: when an uploaded item id is not an integer; tolerance-based entropy
                (r >= 1) compares id magnitudes and is undefined for such ids.
        """
        try:
            numeric_labels = self.item_labels.astype(np.int64)
        except ValueError as error:
            raise ValueError(
                "item ids are not all integers, so r >= 1 (ids within r count as equal) "
                "cannot be used on this dataset; use r < 1 for exact matching"
            ) from error
        return numeric_labels[self.items - 1]

    def save(self, path: Path) -> None:
        """Write the dataset to an uncompressed .npz file at path."""
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "items": self.items,
            "offsets": self.offsets,
            "user_labels": self.user_labels.astype(str),
            "item_labels": self.item_labels.astype(str),
        }
        if self.timestamps is not None:
            arrays["timestamps"] = self.timestamps
        with open(path, "wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path: Path) -> SequenceDataset:
        """Read a dataset written by save()."""
        with np.load(path, allow_pickle=False) as arrays:
            version = int(arrays["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"unsupported dataset file version {version} in {path}")
            return cls(
                items=arrays["items"],
                offsets=arrays["offsets"],
                user_labels=arrays["user_labels"],
                item_labels=arrays["item_labels"],
                timestamps=arrays["timestamps"] if "timestamps" in arrays else None,
            )


def from_sequences(sequences: list[list[int]]) -> SequenceDataset:
    """Build a dataset from already re-indexed sequences (ids 1..n_items); for tests and tools."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.fromiter(
        (item for sequence in sequences for item in sequence), dtype=np.int64, count=int(offsets[-1])
    )
    n_items = int(items.max()) if len(items) else 0
    return SequenceDataset(
        items=items,
        offsets=offsets,
        user_labels=np.array([str(index + 1) for index in range(len(sequences))]),
        item_labels=np.array([str(index + 1) for index in range(n_items)]),
    )


def first_users(dataset: SequenceDataset, n_users: int) -> SequenceDataset:
    """Return the dataset cut to its first n_users sequences, with items re-indexed 1..k.

    Items keep their relative order of re-indexed id; original labels and timestamps follow.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    if n_users >= dataset.n_users:
        return dataset
    end = int(dataset.offsets[n_users])
    kept_items = dataset.items[:end]
    used_ids = np.unique(kept_items)
    new_ids = np.zeros(dataset.n_items + 1, dtype=np.int64)
    new_ids[used_ids] = np.arange(1, len(used_ids) + 1)
    return SequenceDataset(
        items=new_ids[kept_items],
        offsets=dataset.offsets[: n_users + 1].copy(),
        user_labels=dataset.user_labels[:n_users],
        item_labels=dataset.item_labels[used_ids - 1],
        timestamps=None if dataset.timestamps is None else dataset.timestamps[:end],
    )
