"""Rows of the ``assets`` table: which stored file belongs to which account and task.

Plain functions on a unit of work's connection; none of them commits. Kinds:
``upload`` (``POST /v1/uploads``), ``input`` (a data URI stored at create time) and
``output`` (a render or a re-hosted provider output).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import ids
from service import models as m
from service.runtime import Runtime

a = m.assets
#: Uploads may be named in creates for this long (Runway: 24 h).
UPLOAD_VALID_SECONDS = 86400.0


def new_id() -> str:
    return ids.prefixed("ast")


def expires_at(rt: Runtime, now: float, kind: str) -> float | None:
    """When retention deletes a file stored now (None: kept; retention is off).

    An upload is kept at least as long as it may be named in a create.
    """
    hours = rt.settings.retention_hours
    if hours <= 0:
        return None
    keep = hours * 3600.0
    if kind == "upload":
        keep = max(keep, UPLOAD_VALID_SECONDS)
    return now + keep


def row(
    rt: Runtime,
    *,
    asset_id: str,
    kind: str,
    account_id: str,
    now: float,
    task_id: str | None = None,
    filename: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    storage_key: str | None = None,
    media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": asset_id,
        "account_id": account_id,
        "kind": kind,
        "task_id": task_id,
        "filename": filename,
        "content_type": content_type,
        "size": size,
        "sha256": sha256,
        "storage_key": storage_key,
        "media": media,
        "created_at": now,
        "expires_at": expires_at(rt, now, kind),
    }


def insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(a.insert(), rows)


def get(conn: Connection, account_id: str, asset_id: str) -> Any:
    """The account's live asset, or None (also for other accounts' and deleted ones)."""
    return conn.execute(
        sa.select(a).where(a.c.id == asset_id, a.c.account_id == account_id, a.c.deleted_at.is_(None))
    ).first()


def get_by_id(conn: Connection, asset_id: str) -> Any:
    return conn.execute(sa.select(a).where(a.c.id == asset_id)).first()
