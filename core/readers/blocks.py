"""Decompressed text cut into blocks of whole lines, checked as UTF-8 text on the way.

Memory holds about one block at a time: BLOCK_BYTES, or the longest line if that is longer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from core.readers.compression import READ_BYTES, Readable
from core.readers.errors import InteractionLogError, LimitExceededError

# Text is handed to the parsers in blocks of whole lines of about this size (8 MiB).
BLOCK_BYTES = 8 << 20
# Detection looks at up to SAMPLE_LINES non-blank lines from the first SAMPLE_MAX_BYTES.
SAMPLE_LINES = 200
SAMPLE_MAX_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class TextBlocks:
    """Decompressed text in blocks of whole lines, checked to be UTF-8 without NUL bytes.

    sample_lines() returns the first non-blank lines for detection; blocks() then yields the
    whole text from its start, the sampled lines included.
    """

    def __init__(
        self,
        stream: Readable,
        *,
        max_line_bytes: int | None,
        on_block: Callable[[], None] | None = None,
        block_bytes: int | None = None,
    ) -> None:
        self._stream = stream
        self._max_line_bytes = max_line_bytes
        self._on_block = on_block
        self._block_bytes = block_bytes or BLOCK_BYTES
        self._buffer = b""
        self._at_end = False
        self._bom_checked = False

    def sample_lines(self) -> list[tuple[int, str]]:
        """Return up to SAMPLE_LINES (line number, text) pairs of complete, non-blank lines."""
        while not self._at_end and self._sample_needs_more():
            self._check_open_line()
            self._read_more(READ_BYTES)
        self._strip_byte_order_mark()
        text = self._buffer if self._at_end else self._buffer[: self._buffer.rfind(b"\n") + 1]
        self._check_text(text, first_line=1)
        lines = []
        for number, line in enumerate(text.decode("utf-8").split("\n"), start=1):
            line = line.rstrip("\r")
            if line.strip():
                lines.append((number, line))
            if len(lines) == SAMPLE_LINES:
                break
        return lines

    def _sample_needs_more(self) -> bool:
        line_breaks = self._buffer.count(b"\n")
        if line_breaks == 0:
            return True
        return line_breaks < SAMPLE_LINES and len(self._buffer) < SAMPLE_MAX_BYTES

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """Yield (number of the block's first line, block) with every block ending a line."""
        first_line = 1
        while block := self._next_block():
            self._check_text(block, first_line)
            yield first_line, block
            first_line += block.count(b"\n")
            if self._on_block is not None:
                self._on_block()

    def _next_block(self) -> bytes:
        while True:
            self._strip_byte_order_mark()
            if len(self._buffer) >= self._block_bytes:
                end = self._buffer.rfind(b"\n", 0, self._block_bytes)
                if end < 0:
                    # The first line is longer than a block: the block is that whole line.
                    end = self._buffer.find(b"\n", self._block_bytes)
                if end >= 0:
                    return self._take(end + 1)
            if self._at_end:
                return self._take(len(self._buffer))
            self._check_open_line()
            self._read_more(max(READ_BYTES, self._block_bytes - len(self._buffer)))

    def _take(self, size: int) -> bytes:
        block, self._buffer = self._buffer[:size], self._buffer[size:]
        return block

    def _read_more(self, size: int) -> None:
        data = self._stream.read(size)
        if data:
            self._buffer += data
        else:
            self._at_end = True

    def _strip_byte_order_mark(self) -> None:
        if self._bom_checked or (len(self._buffer) < 3 and not self._at_end):
            return
        self._bom_checked = True
        if self._buffer.startswith(UTF8_BOM):
            self._buffer = self._buffer[len(UTF8_BOM) :]
        elif self._buffer.startswith(UTF16_BOMS):
            raise InteractionLogError(
                "the text is UTF-16, not UTF-8; save the file as UTF-8", line=1
            )

    def _check_open_line(self) -> None:
        # The buffer ends inside a line, which must not outgrow max_line_bytes.
        maximum = self._max_line_bytes
        if maximum is None:
            return
        open_line_bytes = len(self._buffer) - self._buffer.rfind(b"\n") - 1
        if open_line_bytes > maximum:
            raise LimitExceededError(
                "max_line_bytes", maximum, f"a line is longer than {maximum} bytes"
            )

    def _check_text(self, block: bytes, first_line: int) -> None:
        nul = block.find(b"\x00")
        if nul >= 0:
            raise InteractionLogError(
                "binary data (a NUL byte), not a text interaction log",
                line=first_line + block.count(b"\n", 0, nul),
            )
        if not block.isascii():
            _check_utf8(block, first_line)
        if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
            _raise_bare_carriage_return(block, first_line)
        if self._max_line_bytes is not None:
            _check_line_lengths(block, first_line, self._max_line_bytes)


def _check_utf8(block: bytes, first_line: int) -> None:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = block.rfind(b"\n", 0, error.start) + 1
        line_end = block.find(b"\n", error.start)
        line_end = len(block) if line_end < 0 else line_end
        raise InteractionLogError(
            f"the text is not valid UTF-8: byte 0x{block[error.start]:02x} at byte "
            f"{error.start - line_start + 1} of the line cannot be decoded; save the file as UTF-8",
            line=first_line + block.count(b"\n", 0, error.start),
            value=block[line_start:line_end].decode("utf-8", errors="replace"),
        ) from None


def _raise_bare_carriage_return(block: bytes, first_line: int) -> None:
    position = 0
    while (position := block.find(b"\r", position)) >= 0:
        if block[position + 1 : position + 2] != b"\n":
            break
        position += 1
    raise InteractionLogError(
        "a carriage return (CR) that is not part of a CRLF line break; save the file with LF "
        "or CRLF line breaks",
        line=first_line + block.count(b"\n", 0, position),
    )


def _check_line_lengths(block: bytes, first_line: int, maximum: int) -> None:
    line_ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
    if not block.endswith(b"\n"):
        line_ends = np.append(line_ends, len(block) - 1)
    lengths = np.diff(line_ends, prepend=-1)
    too_long = np.flatnonzero(lengths > maximum)
    if len(too_long):
        index = int(too_long[0])
        raise LimitExceededError(
            "max_line_bytes", maximum, f"line {first_line + index} is {lengths[index]} bytes long"
        )
