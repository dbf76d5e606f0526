"""Parsers for the text formats, one block of whole lines at a time.

Rows are parsed with Arrow (pyarrow.csv for delimited rows, compute kernels for lists);
when Arrow rejects a block, or a vectorised check finds a bad row, the block is scanned
again line by line in Python to report the exact line, column and value. Fields may be
quoted with double quotes when the separator is one character, but may not contain line
breaks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from core.readers.assemble import Batch, ReadStats
from core.readers.detect import Layout, describe_separator, is_number, split_fields
from core.readers.errors import InteractionLogError

# Runs of blanks that are not a single space; everything else is already normalised.
_WHITESPACE_TO_NORMALIZE = re.compile(rb"[ \t\r\f\v]{2,}|[\t\r\f\v]")
# "::" becomes the ASCII unit separator, which Arrow accepts as a one-byte delimiter.
_DOUBLE_COLON_STANDIN = "\x1f"


def parse_text(
    blocks: Iterator[tuple[int, bytes]], layout: Layout, drop_invalid: bool, stats: ReadStats
) -> Iterator[Batch]:
    """Parse (first line number, block) pairs into batches, updating stats."""
    if layout.header:
        blocks = _skip_header(blocks)
    if layout.format == "sequence-lines":
        parse = _SequenceLinesParser(layout, drop_invalid, stats).parse
    elif layout.format == "item-list-column":
        parse = _ItemListParser(layout, drop_invalid, stats).parse
    else:
        parse = _RowParser(layout, drop_invalid, stats).parse
    for first_line, block in blocks:
        batch = parse(first_line, block)
        if batch is not None and len(batch.items):
            yield batch


def _skip_header(blocks: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """Drop the blank lines before the header and the header line itself."""
    header_found = False
    for first_line, block in blocks:
        position = 0
        while not header_found and position < len(block):
            end = block.find(b"\n", position)
            end = len(block) if end < 0 else end + 1
            header_found = bool(block[position:end].strip())
            position = end
            first_line += 1
        if position < len(block):
            yield first_line, block[position:]


def _arrow_text(block: bytes, separator: str) -> tuple[bytes, str, bool]:
    """Return the block rewritten for a one-byte Arrow delimiter, the delimiter, and quoting."""
    if separator == "::":
        return block.replace(b"::", _DOUBLE_COLON_STANDIN.encode()), _DOUBLE_COLON_STANDIN, False
    if separator == "whitespace":
        return _normalize_whitespace(block), " ", False
    return block, separator, True


def _normalize_whitespace(block: bytes) -> bytes:
    """Turn runs of blanks into one space and drop blanks at line ends; lines stay in place."""
    block = _WHITESPACE_TO_NORMALIZE.sub(b" ", block)
    block = block.replace(b" \n", b"\n").replace(b"\n ", b"\n")
    if block.startswith(b" "):
        block = block[1:]
    if block.endswith(b" "):
        block = block[:-1]
    return block


def _read_csv_block(block: bytes, layout: Layout, column_types: dict[int, pa.DataType]) -> pa.Table:
    data, delimiter, quoting = _arrow_text(block, layout.separator)
    names = [f"f{index}" for index in range(layout.n_fields)]
    return pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, quote_char='"' if quoting else False, ignore_empty_lines=True
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={names[index]: kind for index, kind in column_types.items()},
            include_columns=[names[index] for index in column_types],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )


def _trimmed(column: pa.ChunkedArray) -> pa.Array:
    return pc.utf8_trim_whitespace(column.combine_chunks())


def _is_empty(strings: pa.Array) -> np.ndarray:
    return pc.equal(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)


class _RowParser:
    """delimited, inter and sasrec: one interaction per row."""

    def __init__(self, layout: Layout, drop_invalid: bool, stats: ReadStats) -> None:
        self._layout = layout
        self._drop_invalid = drop_invalid
        self._stats = stats
        self._column_types = {layout.user: pa.string(), layout.item: pa.string()}
        if layout.timestamp is not None:
            self._column_types[layout.timestamp] = pa.float64()

    def parse(self, first_line: int, block: bytes) -> Batch | None:
        layout = self._layout
        try:
            table = _read_csv_block(block, layout, self._column_types)
        except pa.ArrowInvalid as error:
            raise _locate_problem(block, first_line, layout, self._drop_invalid, error) from None
        self._stats.rows_read += table.num_rows
        users = _trimmed(table.column(f"f{layout.user}"))
        items = _trimmed(table.column(f"f{layout.item}"))

        invalid = _is_empty(users) | _is_empty(items)
        keep = None
        if invalid.any():
            if not self._drop_invalid:
                raise _locate_problem(block, first_line, layout, False, None)
            first_row = int(np.flatnonzero(invalid)[0])
            self._stats.count_dropped(
                int(invalid.sum()), _line_of_row(block, first_line, layout, first_row)
            )
            keep = ~invalid

        timestamps = None
        if layout.timestamp is not None:
            timestamps = table.column(f"f{layout.timestamp}").to_numpy()
            finite = np.isfinite(timestamps)
            if not (finite if keep is None else finite | ~keep).all():
                raise _locate_problem(block, first_line, layout, self._drop_invalid, None)
        if keep is not None:
            mask = pa.array(keep)
            users, items = users.filter(mask), items.filter(mask)
            timestamps = timestamps[keep] if timestamps is not None else None
        return Batch(users, items, timestamps)


class _ItemListParser:
    """item-list-column: a user column and a column holding a comma-separated item list."""

    def __init__(self, layout: Layout, drop_invalid: bool, stats: ReadStats) -> None:
        self._layout = layout
        self._drop_invalid = drop_invalid
        self._stats = stats

    def parse(self, first_line: int, block: bytes) -> Batch | None:
        layout = self._layout
        column_types = {layout.user: pa.string(), layout.item: pa.string()}
        try:
            table = _read_csv_block(block, layout, column_types)
        except pa.ArrowInvalid as error:
            raise _locate_problem(block, first_line, layout, self._drop_invalid, error) from None
        self._stats.rows_read += table.num_rows
        users = _trimmed(table.column(f"f{layout.user}"))
        lists = pc.split_pattern(table.column(f"f{layout.item}").combine_chunks(), ",")
        values = pc.utf8_trim_whitespace(lists.values)
        offsets = lists.offsets.to_numpy()
        invalid = _is_empty(users) | (_empty_counts(values, offsets) > 0)
        keep = np.ones(len(users), dtype=bool)
        if invalid.any():
            if not self._drop_invalid:
                raise _locate_problem(block, first_line, layout, False, None)
            first_row = int(np.flatnonzero(invalid)[0])
            self._stats.count_dropped(
                int(invalid.sum()), _line_of_row(block, first_line, layout, first_row)
            )
            keep = ~invalid
        return _expand_lists(users, offsets, values, keep, skip_first=False)


class _SequenceLinesParser:
    """sequence-lines: `user item1 item2 ...`, one line per row."""

    def __init__(self, layout: Layout, drop_invalid: bool, stats: ReadStats) -> None:
        self._layout = layout
        self._drop_invalid = drop_invalid
        self._stats = stats

    def parse(self, first_line: int, block: bytes) -> Batch | None:
        if len(block) >= 1 << 31:
            raise InteractionLogError("a line is 2 GiB or longer", line=first_line)
        separator = self._layout.separator
        if separator == "whitespace":
            block, separator = _normalize_whitespace(block), " "
        text = pa.StringArray.from_buffers(
            1, pa.py_buffer(np.array([0, len(block)], dtype=np.int32)), pa.py_buffer(block)
        )
        lines = pc.split_pattern(text, "\n").values
        fields = pc.split_pattern(lines, separator)
        values = pc.utf8_trim_whitespace(fields.values)
        offsets = fields.offsets.to_numpy()
        counts = np.diff(offsets)
        empty_counts = _empty_counts(values, offsets)

        blank = empty_counts == counts
        invalid = ~blank & ((empty_counts > 0) | (counts < 2))
        self._stats.rows_read += int((~blank).sum())
        if invalid.any():
            first_row = int(np.flatnonzero(invalid)[0])
            if not self._drop_invalid:
                raise _sequence_line_error(
                    lines[first_row].as_py(), first_line + first_row, self._layout
                )
            self._stats.count_dropped(int(invalid.sum()), first_line + first_row)
        users = values.take(pa.array(offsets[:-1]))
        return _expand_lists(users, offsets, values, ~blank & ~invalid, skip_first=True)


def _empty_counts(values: pa.Array, offsets: np.ndarray) -> np.ndarray:
    """Count the empty strings in each list of a list array given by values and offsets."""
    cumulative = np.concatenate([[0], np.cumsum(_is_empty(values))])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def _expand_lists(
    users: pa.Array, offsets: np.ndarray, values: pa.Array, keep: np.ndarray, skip_first: bool
) -> Batch:
    """Pair each kept row's user with each value of its list (after the first if skip_first)."""
    value_rows = np.repeat(np.arange(len(keep)), np.diff(offsets))
    selected = keep[value_rows]
    if skip_first:
        selected &= np.arange(len(values)) != offsets[:-1][value_rows]
    items = values.filter(pa.array(selected))
    return Batch(users.take(pa.array(value_rows[selected])), items, None)


def _sequence_line_error(text: str, line: int, layout: Layout) -> InteractionLogError:
    fields = [field.strip() for field in split_fields(text.rstrip("\r"), layout.separator)]
    if not fields[0]:
        return InteractionLogError(
            "empty user id; pass drop_invalid to drop such lines", line=line, column=0, value=text
        )
    if len(fields) < 2:
        return InteractionLogError("the line has a user but no items", line=line, value=text)
    position = fields.index("", 1)
    return InteractionLogError(
        "empty item id; pass drop_invalid to drop such lines",
        line=line,
        column=position,
        value=text,
    )


def _line_of_row(block: bytes, first_line: int, layout: Layout, row: int) -> int:
    """Return the line number of the row-th non-blank line of a block (Arrow skips blank lines)."""
    for offset, text in enumerate(block.decode("utf-8").split("\n")):
        if _is_blank_row(text, layout.separator):
            continue
        if row == 0:
            return first_line + offset
        row -= 1
    return first_line


def _is_blank_row(text: str, separator: str) -> bool:
    # Arrow skips only empty lines; whitespace normalisation empties blank-only lines first.
    text = text.rstrip("\r")
    return not text.strip() if separator == "whitespace" else not text


def _locate_problem(
    block: bytes,
    first_line: int,
    layout: Layout,
    drop_invalid: bool,
    arrow_error: pa.ArrowInvalid | None,
) -> InteractionLogError:
    """Scan a block line by line for the first row that cannot be read."""
    for offset, text in enumerate(block.decode("utf-8").split("\n")):
        if _is_blank_row(text, layout.separator):
            continue
        problem = _check_row(text.rstrip("\r"), layout, drop_invalid)
        if problem is not None:
            reason, column, value = problem
            return InteractionLogError(
                reason, line=first_line + offset, column=layout.column_label(column), value=value
            )
    last_line = first_line + block.count(b"\n")
    detail = f": {arrow_error}" if arrow_error is not None else ""
    return InteractionLogError(
        f"cannot parse lines {first_line} to {last_line}{detail}", line=first_line
    )


def _check_row(text: str, layout: Layout, drop_invalid: bool) -> tuple[str, int | None, str] | None:
    """Return (reason, column, value) for a row the parsers reject, or None for a good row."""
    fields = split_fields(text, layout.separator)
    if len(fields) != layout.n_fields:
        separator = describe_separator(layout.separator)
        return (
            f"expected {layout.n_fields} fields separated by {separator}, found {len(fields)}",
            None,
            text,
        )
    for position, role in ((layout.user, "user"), (layout.item, "item")):
        if not fields[position].strip() and not drop_invalid:
            return (
                f"empty {role} id; pass drop_invalid to drop such rows",
                position,
                fields[position],
            )
    if not fields[layout.user].strip() or not fields[layout.item].strip():
        return None
    if layout.format == "item-list-column":
        if not all(entry.strip() for entry in fields[layout.item].split(",")) and not drop_invalid:
            return "empty item id in the item list", layout.item, fields[layout.item]
        return None
    if layout.timestamp is not None:
        return _check_timestamp(fields[layout.timestamp], layout.timestamp)
    return None


def _check_timestamp(value: str, column: int) -> tuple[str, int, str] | None:
    if not value.strip():
        return "missing timestamp", column, value
    if not is_number(value) or not math.isfinite(float(value)):
        return "the timestamp is not a finite number (e.g. Unix seconds)", column, value
    return None
