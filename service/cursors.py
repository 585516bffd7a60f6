"""Opaque page cursors for newest-first lists: ``(created_at, id)`` of the last row.

Lists order by ``created_at DESC, id DESC``; the next page starts strictly after the
cursor's row, so pages never repeat or skip rows that share a timestamp.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from service import errors


def encode(row: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row.created_at, row.id])).decode().rstrip("=")


def decode(cursor: str) -> tuple[float, str]:
    """``(created_at, id)``, or a 400 naming ``cursor`` for anything this API did not issue."""
    try:
        created_at, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(created_at), str(row_id)
    except Exception:
        raise errors.ValidationError("cursor: is not a cursor this API returned", field="cursor") from None
