"""Cursor pagination over rows with increasing integer ids, newest first."""

from __future__ import annotations

import base64
import binascii

from sqlalchemy import Select

from app.errors import ProblemError

MAX_PAGE_SIZE = 200
# Row ids are 64-bit signed integers on PostgreSQL and SQLite.
MAX_RESOURCE_ID = 2**63 - 1


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the id a cursor points past; raises a 400 problem for a cursor we did not issue."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "id":
            raise ValueError(prefix)
        last_id = int(value)
        if not 1 <= last_id <= MAX_RESOURCE_ID:
            raise ValueError(value)
        return last_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(400, f"invalid cursor {cursor!r}: pass the next_cursor value of a previous page") from None


def paginate(session, query: Select, id_column, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """Return one page of rows (id descending) and the cursor of the next page, or None at the end."""
    if cursor:
        query = query.where(id_column < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
