"""read_interactions: from a file or stream to a SequenceDataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path, PurePath
from typing import BinaryIO

from core.readers.assemble import DatasetBuilder, ReadStats
from core.readers.blocks import TextBlocks
from core.readers.compression import (
    PARQUET_MAGIC,
    CountingReader,
    DecompressedInput,
    open_decompressed,
    spool_to_temporary_file,
)
from core.readers.detect import detect_text_layout
from core.readers.errors import InteractionLogError
from core.readers.options import ReadLimits, ReadOptions, ReadResult
from core.readers.parquet import ParquetReader
from core.readers.text import parse_text

PARQUET_SUFFIXES = (".parquet", ".pq")


def read_interactions(
    source: Path | str | BinaryIO,
    options: ReadOptions = ReadOptions(),
    *,
    filename: str | None = None,
    limits: ReadLimits = ReadLimits(),
    on_progress: Callable[[int], None] | None = None,
) -> ReadResult:
    """Read an interaction log into a SequenceDataset.

    Users and items are numbered in order of first appearance (items from 1, as
    SequenceDataset requires) and keep their original ids as labels. Each user's sequence is
    ordered by timestamp with ties in file order, or in file order without timestamps, and a
    user's rows need not be contiguous. Text is streamed in blocks, so besides one block the
    memory holds O(interactions) arrays: int32 codes and float64 timestamps while reading,
    then the dataset.

    Args:
        source: a path, or a binary stream positioned at the start of the log. A zip archive
            from a stream that cannot seek, and Parquet that is compressed or comes from such
            a stream, are first copied to a temporary file.
        options: format, separator, header, columns and compression; None fields are detected.
        filename: the name whose extension (.inter, .parquet, .gz, ...) detection uses;
            defaults to the path's or the stream's name.
        limits: bounds checked while reading.
        on_progress: called after each block with the number of input bytes consumed so far
            (compressed bytes for compressed input).

    Returns:
        The dataset, the layout used (ReadResult.detected), row counts and warnings.

    Raises:
        InteractionLogError: the input cannot be read as an interaction log; the error names
            the line, column and value where that applies.
        LimitExceededError: the input went past one of limits.
    """
    report = on_progress or (lambda _: None)
    with ExitStack() as stack:
        raw, name = _open_source(source, filename, stack)
        counter = CountingReader(raw)
        decompressed = open_decompressed(counter, options.compression, name, limits, stack)
        builder = DatasetBuilder(
            max_users=limits.max_users,
            max_items=limits.max_items,
            max_interactions=limits.max_interactions,
        )
        stats = ReadStats()
        warnings: list[str] = []
        if _is_parquet(decompressed, options):
            detected = _read_parquet(
                decompressed, counter, options, limits, builder, stats, report, stack
            )
        else:
            detected = _read_text(
                decompressed, options, limits, builder, stats, warnings, report, counter
            )
    detected["compression"] = decompressed.compression
    _check_rows_left(stats, detected)
    if stats.rows_dropped:
        position = "row" if detected["format"] == "parquet" else "line"
        warnings.append(
            f"dropped {stats.rows_dropped} rows with an empty user or item id "
            f"(the first at {position} {stats.first_dropped_line})"
        )
    return ReadResult(builder.build(), detected, stats.rows_read, stats.rows_dropped, warnings)


def _open_source(
    source: Path | str | BinaryIO, filename: str | None, stack: ExitStack
) -> tuple[BinaryIO, str | None]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return stack.enter_context(open(path, "rb")), filename or path.name
    stream_name = getattr(source, "name", None)
    if filename is None and isinstance(stream_name, str):
        filename = PurePath(stream_name).name
    return source, filename


def _is_parquet(decompressed: DecompressedInput, options: ReadOptions) -> bool:
    if options.format is not None:
        return options.format == "parquet"
    if decompressed.stream.peek(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
        return True
    return decompressed.name is not None and decompressed.name.lower().endswith(PARQUET_SUFFIXES)


def _read_text(
    decompressed: DecompressedInput,
    options: ReadOptions,
    limits: ReadLimits,
    builder: DatasetBuilder,
    stats: ReadStats,
    warnings: list[str],
    report: Callable[[int], None],
    counter: CountingReader,
) -> dict[str, object]:
    text = TextBlocks(
        decompressed.stream,
        max_line_bytes=limits.max_line_bytes,
        on_block=lambda: report(counter.bytes_read),
    )
    layout = detect_text_layout(text.sample_lines(), decompressed.name, options)
    warnings.extend(layout.warnings)
    for batch in parse_text(text.blocks(), layout, options.drop_invalid, stats):
        builder.add(batch)
    report(counter.bytes_read)
    return layout.describe()


def _read_parquet(
    decompressed: DecompressedInput,
    counter: CountingReader,
    options: ReadOptions,
    limits: ReadLimits,
    builder: DatasetBuilder,
    stats: ReadStats,
    report: Callable[[int], None],
    stack: ExitStack,
) -> dict[str, object]:
    # Parquet needs random access and offsets from the file's start: read an uncompressed,
    # seekable input that starts at byte 0 in place, and copy anything else (decompressing it
    # under the limits) to a temporary file.
    in_place = decompressed.compression == "none" and counter.seekable() and counter.start == 0
    if in_place:
        file = counter.raw
    else:
        file = spool_to_temporary_file(decompressed.stream, stack)
        report(counter.bytes_read)
    file_bytes = file.seek(0, os.SEEK_END)
    file.seek(0)

    # Row-group progress counts the Parquet file's bytes, which are the input's bytes only
    # when the file is read in place.
    reader = ParquetReader(file, options, limits, file_bytes)
    row_group_progress = report if in_place else (lambda _: None)
    for batch in reader.batches(stats, options.drop_invalid, row_group_progress):
        builder.add(batch)
    report(file_bytes if in_place else counter.bytes_read)
    return reader.describe()


def _check_rows_left(stats: ReadStats, detected: dict[str, object]) -> None:
    if stats.rows_read == 0:
        if detected.get("header"):
            raise InteractionLogError("the file has a header line but no data rows")
        raise InteractionLogError("the file has no data rows")
    if stats.rows_dropped == stats.rows_read:
        raise InteractionLogError(
            f"no interactions left: all {stats.rows_read} rows had an empty user or item id "
            "and were dropped"
        )
