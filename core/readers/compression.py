"""Byte streams under the text parsers: progress counting, compression detection, and
decompression under the size and ratio limits."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import tempfile
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from core.readers.errors import InteractionLogError, LimitExceededError
from core.readers.options import RATIO_CHECK_MIN_BYTES, ReadLimits

# Bytes asked of the input or the decompressor per read (1 MiB).
READ_BYTES = 1 << 20

MAGIC_NUMBERS = (
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zip", b"PK\x03\x04"),
    ("zip", b"PK\x05\x06"),  # an empty archive
)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"
COMPRESSION_SUFFIXES = {
    "gzip": (".gz", ".gzip"),
    "bz2": (".bz2",),
    "xz": (".xz",),
    "zip": (".zip",),
}


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class CountingReader:
    """Binary reader over the raw input that counts the bytes read from it.

    start is the input's position when reading began (0 for a stream that cannot seek).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.bytes_read = 0
        self.start = raw.tell() if raw.seekable() else 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes_read += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


class PeekableReader:
    """Binary reader that can look at its first bytes without consuming them."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._stream.read(size - len(self._buffer))
            if not data:
                break
            self._buffer += data
        return self._buffer[:size]

    def read(self, size: int = -1) -> bytes:
        if self._buffer:
            if size < 0:
                data, self._buffer = self._buffer + self._stream.read(), b""
                return data
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._stream.read(size)

    def readable(self) -> bool:
        return True


def detect_compression(head: bytes) -> str:
    """Name the compression whose magic number starts head, or "none"."""
    for name, magic in MAGIC_NUMBERS:
        if head.startswith(magic):
            return name
    if head.startswith(ZSTD_MAGIC):
        raise InteractionLogError(
            "the input is Zstandard-compressed, which is not supported; use gzip, bz2, xz or zip"
        )
    return "none"


def strip_compression_suffix(name: str | None, compression: str) -> str | None:
    if name is None:
        return None
    for suffix in COMPRESSION_SUFFIXES.get(compression, ()):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class LimitedReader:
    """Decompressed byte stream that enforces the size and ratio limits as it is read.

    Errors from the decompressor become InteractionLogError, so a corrupt or truncated
    archive is reported as bad input.
    """

    def __init__(
        self, stream: Readable, counter: CountingReader, compression: str, limits: ReadLimits
    ) -> None:
        self._stream = stream
        self._counter = counter
        self._compression = compression
        self._limits = limits
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        if self._compression == "none":
            data = self._stream.read(size)
        else:
            data = self._read_decompressed(size)
        self.bytes_read += len(data)
        self._check_limits()
        return data

    def readable(self) -> bool:
        return True

    def _read_decompressed(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as error:
            raise InteractionLogError(
                f"corrupt or truncated {self._compression} data: {error}"
            ) from error

    def _check_limits(self) -> None:
        maximum = self._limits.max_decompressed_bytes
        if maximum is not None and self.bytes_read > maximum:
            raise LimitExceededError(
                "max_decompressed_bytes", maximum, f"the text is longer than {maximum} bytes"
            )
        ratio = self._limits.max_compression_ratio
        if ratio is None or self._compression == "none" or self.bytes_read < RATIO_CHECK_MIN_BYTES:
            return
        compressed = max(self._counter.bytes_read, 1)
        if self.bytes_read > ratio * compressed:
            raise LimitExceededError(
                "max_compression_ratio",
                ratio,
                f"{compressed} compressed bytes inflated to more than {self.bytes_read} bytes",
            )


@dataclass
class DecompressedInput:
    stream: PeekableReader
    compression: str
    name: str | None  # file name without the compression suffix, or the zip member's name


def open_decompressed(
    counter: CountingReader,
    compression: str | None,
    name: str | None,
    limits: ReadLimits,
    stack: ExitStack,
) -> DecompressedInput:
    """Open the decompressed view of the raw input; compression None detects it."""
    raw = PeekableReader(counter)
    if compression is None:
        compression = detect_compression(raw.peek(8))
    inner_name = strip_compression_suffix(name, compression)
    if compression == "none":
        stream: Readable = raw
    elif compression == "gzip":
        stream = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
    elif compression == "bz2":
        stream = stack.enter_context(bz2.BZ2File(raw, mode="rb"))
    elif compression == "xz":
        stream = stack.enter_context(lzma.LZMAFile(raw, mode="rb"))
    else:
        stream, inner_name = _open_zip_member(counter, raw, limits, stack)
    limited = LimitedReader(stream, counter, compression, limits)
    return DecompressedInput(PeekableReader(limited), compression, inner_name)


def _open_zip_member(
    counter: CountingReader, raw: PeekableReader, limits: ReadLimits, stack: ExitStack
) -> tuple[Readable, str]:
    # zipfile needs random access; a non-seekable input is first copied to a temporary file.
    if counter.seekable():
        counter.seek(counter.start)
        archive_file: BinaryIO | CountingReader = counter
    else:
        archive_file = stack.enter_context(tempfile.TemporaryFile())
        shutil.copyfileobj(raw, archive_file)
        archive_file.seek(0)
    try:
        archive = stack.enter_context(zipfile.ZipFile(archive_file))  # type: ignore[arg-type]
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX/")
        ]
        if len(members) != 1:
            names = ", ".join(info.filename for info in members[:5]) or "none"
            raise InteractionLogError(
                f"a zip archive must contain exactly one file, but this one contains "
                f"{len(members)} ({names})"
            )
        member = members[0]
        if member.flag_bits & 0x1:
            raise InteractionLogError(f"the zip member {member.filename!r} is encrypted")
        maximum = limits.max_decompressed_bytes
        if maximum is not None and member.file_size > maximum:
            raise LimitExceededError(
                "max_decompressed_bytes",
                maximum,
                f"the zip member {member.filename!r} declares {member.file_size} bytes",
            )
        return stack.enter_context(archive.open(member)), member.filename
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as error:
        raise InteractionLogError(f"corrupt or unsupported zip data: {error}") from error


def spool_to_temporary_file(stream: Readable, stack: ExitStack) -> BinaryIO:
    """Copy a stream into a temporary file (for formats that need random access)."""
    spool = stack.enter_context(tempfile.TemporaryFile())
    while data := stream.read(READ_BYTES):
        spool.write(data)
    spool.seek(0)
    return spool
