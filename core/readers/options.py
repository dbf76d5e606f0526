"""Read options, read limits and the read result of core.readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.dataset import SequenceDataset
from core.readers.errors import InteractionLogError

FORMATS = ("delimited", "inter", "sasrec", "sequence-lines", "item-list-column", "parquet")
COMPRESSIONS = ("none", "gzip", "bz2", "xz", "zip")
# Separator names beyond single characters: "::" (MovieLens .dat) and runs of spaces and tabs.
MULTI_CHARACTER_SEPARATORS = ("::", "whitespace")

ColumnReference = str | int
# The text that means timestamp_column=False where options arrive as text (query, command line).
NO_TIMESTAMP_COLUMN = "none"


def parse_column_text(text: str | None) -> ColumnReference | None:
    """Return a column typed as text: digits give a 0-based position, other text a header name."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def parse_timestamp_column_text(text: str | None) -> ColumnReference | Literal[False] | None:
    """Return parse_column_text(text), or False (keep file order) for NO_TIMESTAMP_COLUMN in any case."""
    if text is not None and text.lower() == NO_TIMESTAMP_COLUMN:
        return False
    return parse_column_text(text)


@dataclass(frozen=True)
class ReadOptions:
    """How to read an interaction log; every None is detected from the content and file name.

    Attributes:
        format: one of FORMATS. "delimited": one interaction per row with a user, an item
            and an optional timestamp column. "inter": a RecBole atomic file, whose header
            names carry types (`user_id:token`). "sasrec": `user item` per line, in time
            order. "sequence-lines": `user item1 item2 ...`, one user's sequence per line; a
            user's repeated line appends to its sequence. "item-list-column": a delimited file
            whose item column contains a comma-separated list of item ids. "parquet".
        separator: a single character, "::", or "whitespace" (runs of spaces and tabs).
        header: whether the first non-blank line contains column names.
        user_column, item_column, timestamp_column: a header name or a 0-based position.
            timestamp_column=False means the log has no timestamp column, so sequences keep
            file order even where detection would have found one.
        compression: one of COMPRESSIONS; "none" reads the bytes as they are.
        drop_invalid: drop rows whose user or item id is empty and count them in
            ReadResult.rows_dropped, instead of raising InteractionLogError. In the
            sequence formats a row is a whole line, so one empty item drops that line.
    """

    format: str | None = None
    separator: str | None = None
    header: bool | None = None
    user_column: ColumnReference | None = None
    item_column: ColumnReference | None = None
    timestamp_column: ColumnReference | Literal[False] | None = None
    compression: str | None = None
    drop_invalid: bool = False

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise InteractionLogError(
                f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}"
            )
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise InteractionLogError(
                f"unknown compression {self.compression!r}; "
                f"expected one of {', '.join(COMPRESSIONS)}"
            )
        if self.separator is not None:
            _check_separator(self.separator)
        for name in ("user_column", "item_column", "timestamp_column"):
            _check_column_reference(name, getattr(self, name))


def _check_separator(separator: str) -> None:
    if separator in MULTI_CHARACTER_SEPARATORS:
        return
    if len(separator) != 1 or separator in '\r\n"' or not separator.isascii():
        raise InteractionLogError(
            f"invalid separator {separator!r}; expected one ASCII character other than a "
            "line break or a double quote, '::' or 'whitespace'"
        )


def _check_column_reference(name: str, reference: object) -> None:
    if reference is None or (reference is False and name == "timestamp_column"):
        return
    if isinstance(reference, bool) or not isinstance(reference, (str, int)):
        raise InteractionLogError(
            f"{name} must be a column name or a 0-based position, got {reference!r}"
        )
    if isinstance(reference, int) and reference < 0:
        raise InteractionLogError(f"{name} must be a 0-based position, got {reference}")
    if isinstance(reference, str) and not reference.strip():
        raise InteractionLogError(f"{name} must not be an empty name")


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a read accepts; None means unlimited.

    Attributes:
        max_decompressed_bytes: size of the text after decompression (for uncompressed
            input, the input size). For Parquet, the uncompressed size of the row groups.
        max_compression_ratio: decompressed bytes per compressed byte read so far. It is
            checked once RATIO_CHECK_MIN_BYTES have been decompressed, so a small, highly
            repetitive file is not rejected. It does not apply to uncompressed input.
        max_line_bytes: length of one line in bytes, line break included.
        max_users, max_items: distinct users and distinct items.
        max_interactions: interactions kept (rows for the row formats, items for the
            sequence formats).

    Each is checked while reading, so an oversized input stops early; LimitExceededError
    names the limit.
    """

    max_decompressed_bytes: int | None = None
    max_compression_ratio: float | None = None
    max_line_bytes: int | None = None
    max_users: int | None = None
    max_items: int | None = None
    max_interactions: int | None = None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")


# Decompressed bytes read before max_compression_ratio is checked (1 MiB).
RATIO_CHECK_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class ReadResult:
    """A parsed interaction log and what the reader found out about it.

    Attributes:
        dataset: the sequences, with users and items numbered in order of first appearance.
        detected: the layout used, detected or given: format, separator, header,
            user_column, item_column, timestamp_column (a header name, a 0-based position, or
            None) and compression.
        rows_read: data rows read, header and blank lines excluded; in the sequence formats
            a row is one line.
        rows_dropped: rows dropped by drop_invalid.
        warnings: guesses the caller may want to check, e.g. a timestamp column chosen by
            position in a file without a header.
    """

    dataset: SequenceDataset
    detected: dict[str, object]
    rows_read: int
    rows_dropped: int
    warnings: list[str] = field(default_factory=list)
