"""Errors raised while reading an interaction log."""

from __future__ import annotations

MAX_VALUE_CHARS = 80


def truncate_value(value: str | None) -> str | None:
    """Cut value to MAX_VALUE_CHARS characters, marking the cut with '...'."""
    if value is None or len(value) <= MAX_VALUE_CHARS:
        return value
    return value[: MAX_VALUE_CHARS - 3] + "..."


class InteractionLogError(ValueError):
    """An interaction log that cannot be read, with where the problem is.

    Attributes:
        reason: what is wrong, without the location.
        line: 1-based line number in the decompressed text, or None when the problem is not on
            one line (an empty file, a corrupt archive, a Parquet row).
        column: the column's header name or 0-based position, or None.
        value: the offending text, cut to 80 characters, or None.
    """

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        column: str | int | None = None,
        value: str | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.value = truncate_value(value)
        super().__init__(self._format_message())

    def _format_message(self) -> str:
        location = []
        if self.line is not None:
            location.append(f"line {self.line}")
        if self.column is not None:
            location.append(f"column {self.column!r}")
        message = f"{', '.join(location)}: {self.reason}" if location else self.reason
        if self.value is not None:
            message += f" (value {self.value!r})"
        return message


class LimitExceededError(ValueError):
    """A read stopped because the input went past one of the ReadLimits.

    Attributes:
        limit: the ReadLimits field name, e.g. "max_decompressed_bytes".
        maximum: the value that field was set to.
    """

    def __init__(self, limit: str, maximum: int | float, detail: str) -> None:
        self.limit = limit
        self.maximum = maximum
        super().__init__(f"{limit}={maximum} exceeded: {detail}")
