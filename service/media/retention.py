"""Retention: stored files (uploads, inputs, outputs) are deleted when they expire.

``assets.expires_at`` is set when a file is stored (``CALLBOARD_RETENTION_HOURS`` after
it, uploads at least 24 h; no expiry when the setting is 0). The worker's retention
job deletes due files and marks their rows; when an output goes, its task records
``output_expired_at`` so the task shows ``output: []`` and ``outputExpired: true``
instead of links that would 404.

Inputs of a task that has not finished are kept until it has: deleting them would fail
a task that is merely queued.

Order of work makes every step safe to repeat and to race: the file is deleted first
(deleting a missing file is a no-op), then one transaction marks the rows with
conditional UPDATEs (``deleted_at IS NULL``) and flags the tasks. A crash in between
leaves rows that the next round finishes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import models as m
from service import storage, taskview
from service.db import Database
from service.runtime import Runtime

log = logging.getLogger(__name__)
a = m.assets
t = m.tasks


def due(conn: Connection, now: float, limit: int) -> list[Any]:
    """Expired, not yet deleted assets, oldest first, excluding inputs of active tasks."""
    active_task = sa.exists().where(t.c.id == a.c.task_id, t.c.status.in_(taskview.ACTIVE))
    query = (
        sa.select(a.c.id, a.c.kind, a.c.task_id, a.c.storage_key)
        .where(
            a.c.expires_at.is_not(None),
            a.c.expires_at <= now,
            a.c.deleted_at.is_(None),
            sa.or_(a.c.kind == "output", sa.not_(active_task)),
        )
        .order_by(a.c.expires_at)
        .limit(limit)
    )
    return list(conn.execute(query).all())


def mark_deleted(conn: Connection, rows: list[Any], now: float) -> int:
    """Mark ``rows`` deleted and their tasks' outputs expired; the number of rows marked."""
    ids = [row.id for row in rows]
    result = conn.execute(a.update().where(a.c.id.in_(ids), a.c.deleted_at.is_(None)).values(deleted_at=now))
    task_ids = sorted({row.task_id for row in rows if row.kind == "output" and row.task_id})
    if task_ids:
        conn.execute(
            t.update()
            .where(t.c.id.in_(task_ids), t.c.output_expired_at.is_(None))
            .values(output_expired_at=now)
        )
    return int(result.rowcount)


class RetentionJob:
    """The worker job: each round deletes up to ``batch`` due files.

    Looks at the database at most every ``interval`` seconds while nothing is due.
    """

    name = "retention"

    def __init__(self, db: Database, rt: Runtime, *, batch: int = 200, interval: float = 60.0) -> None:
        self.db = db
        self.rt = rt
        self.batch = batch
        self.interval = interval
        self._next_check = float("-inf")

    async def run_once(self) -> bool:
        now = self.rt.now()
        if now < self._next_check:
            return False
        rows = await self.db.read(lambda conn: due(conn, now, self.batch))
        if len(rows) < self.batch:
            self._next_check = now + self.interval
        if not rows:
            return False
        store = storage.from_settings(self.rt.settings)
        gone = await asyncio.to_thread(_delete_files, store, rows)
        if gone:
            marked = await self.db.write(lambda conn: mark_deleted(conn, gone, now))
            log.info("retention: deleted %d expired files", marked)
        return len(rows) == self.batch

    async def aclose(self) -> None:
        return None


def _delete_files(store: storage.Storage, rows: list[Any]) -> list[Any]:
    """Delete the rows' files; the rows whose file is gone now (others retry next round)."""
    gone = []
    for row in rows:
        try:
            if row.storage_key:
                store.delete(row.storage_key)
            if row.task_id:  # pictures the dashboard derived from the task's files go with them
                store.delete_prefix(f"thumbs/{row.task_id}")
        except (OSError, storage.InvalidKey) as exc:  # pragma: no cover - disk trouble
            log.warning("retention: could not delete %s: %s", row.storage_key, exc)
            continue
        gone.append(row)
    return gone
