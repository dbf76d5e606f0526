"""Interaction-log readers: text, RecBole, SASRec, sequence and Parquet logs to SequenceDataset.

The formats (ReadOptions.format) are delimited rows (CSV, TSV, `::`, `;`, space), RecBole
atomic `.inter` files, SASRec `user item` lines, `user item1 item2 ...` sequence lines, a
delimited column that contains a comma-separated item list, and Parquet. Any of them may be
compressed with gzip, bz2, xz or zip (one member). Each is detected from the content and the
file name unless given, by the rules written out in core.readers.detect.
"""

from core.readers.errors import InteractionLogError, LimitExceededError
from core.readers.options import (
    COMPRESSIONS,
    FORMATS,
    NO_TIMESTAMP_COLUMN,
    ReadLimits,
    ReadOptions,
    ReadResult,
    parse_column_text,
    parse_timestamp_column_text,
)
from core.readers.read import read_interactions

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "InteractionLogError",
    "LimitExceededError",
    "NO_TIMESTAMP_COLUMN",
    "ReadLimits",
    "ReadOptions",
    "ReadResult",
    "parse_column_text",
    "parse_timestamp_column_text",
    "read_interactions",
]
