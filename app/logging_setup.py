"""Logging configuration, applied once by each process entry point."""

from __future__ import annotations

import json
import logging
import sys
import time

# Attributes of every LogRecord; anything else on a record came from `extra=` and is context.
# uvicorn adds color_message, a copy of the message with terminal colour codes.
_STANDARD_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"
}


def _context_of(record: logging.LogRecord) -> dict:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_RECORD_FIELDS}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line, with its context fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class TextFormatter(logging.Formatter):
    """Format a record as a plain line followed by its context as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context_of(record)
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in context.items())
        return line


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send all records at level and above to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
