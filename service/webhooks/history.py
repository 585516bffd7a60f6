"""The delivery log (domain): deliveries with their attempts, manual replay, recovery.

A delivery's id is its ``webhook-id``; replaying it re-queues the same row, so the
receiver sees the same id again (its attempt is marked ``manual``). Recovery re-queues
an endpoint's failed deliveries since a time, a bounded number per call; the
endpoint's rate limit then drains them at its pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import cursors, db, errors, events
from service import models as m
from service.webhooks import endpoints

d = m.deliveries
a = m.attempts
e = m.endpoints
RECOVER_MAX = 1000

COLUMNS = (*d.c, m.events.c.type.label("event_type"))


def attempts_for(conn: Connection, delivery_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each delivery's attempts, oldest first (one query for a whole page)."""
    out: dict[str, list[Any]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return out
    for row in conn.execute(
        sa.select(a).where(a.c.delivery_id.in_(list(delivery_ids))).order_by(a.c.delivery_id, a.c.number)
    ):
        out[row.delivery_id].append(row)
    return out


def _base_query() -> Any:
    return sa.select(*COLUMNS).join(m.events, m.events.c.id == d.c.event_id)


def list_for_endpoint(
    conn: Connection,
    account_id: str,
    endpoint_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Any], dict[str, list[Any]], str | None]:
    """Newest first: ``(deliveries, attempts by delivery id, next_cursor)``."""
    endpoints.get(conn, account_id, endpoint_id, kinds=("subscription", "hook"))
    query = _base_query().where(d.c.endpoint_id == endpoint_id, d.c.account_id == account_id)
    if status is not None:
        query = query.where(d.c.status == status)
    if cursor is not None:
        created_at, row_id = cursors.decode(cursor)
        query = query.where(
            sa.or_(d.c.created_at < created_at, sa.and_(d.c.created_at == created_at, d.c.id < row_id))
        )
    rows = conn.execute(query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit + 1)).all()
    next_cursor = cursors.encode(rows[limit - 1]) if len(rows) > limit else None
    rows = rows[:limit]
    return rows, attempts_for(conn, [r.id for r in rows]), next_cursor


def list_for_task(conn: Connection, account_id: str, task_id: str) -> tuple[list[Any], dict[str, list[Any]]]:
    """Every delivery of the task's events (replyUrl and subscribers), oldest first."""
    t = m.tasks
    found = conn.execute(
        sa.select(t.c.id).where(t.c.id == task_id, t.c.account_id == account_id, t.c.deleted_at.is_(None))
    ).first()
    if found is None:
        raise errors.NotFound("Task not found", code="task_not_found")
    rows = conn.execute(
        _base_query()
        .where(d.c.task_id == task_id, d.c.account_id == account_id)
        .order_by(d.c.created_at, m.events.c.sequence, d.c.id)
    ).all()
    return rows, attempts_for(conn, [r.id for r in rows])


def get(conn: Connection, account_id: str, delivery_id: str) -> tuple[Any, list[Any]]:
    row = conn.execute(_base_query().where(d.c.id == delivery_id, d.c.account_id == account_id)).first()
    if row is None:
        raise errors.NotFound("Delivery not found", code="delivery_not_found")
    return row, attempts_for(conn, [row.id])[row.id]


def retry(conn: Connection, account_id: str, delivery_id: str, now: float) -> tuple[Any, list[Any]]:
    """Send this delivery again now (same webhook-id); its next attempt is marked manual.

    The fence bump makes a request still in flight for an older claim unable to record
    over the replay.
    """
    row, _ = get(conn, account_id, delivery_id)
    endpoint = conn.execute(sa.select(e.c.enabled, e.c.deleted_at).where(e.c.id == row.endpoint_id)).one()
    if not endpoint.enabled or endpoint.deleted_at is not None:
        raise errors.ValidationError(
            "The delivery's endpoint is disabled; enable it before resending",
            field="endpoint",
            code="endpoint_disabled",
        )
    conn.execute(
        d.update()
        .where(d.c.id == delivery_id)
        .values(
            status="pending",
            manual=True,
            next_attempt_at=now,
            succeeded_at=None,
            lease_owner=None,
            lease_expires_at=None,
            fence=d.c.fence + 1,
            updated_at=now,
        )
    )
    db.notify(conn, events.DELIVERIES_CHANNEL)
    return get(conn, account_id, delivery_id)


def recover(
    conn: Connection, account_id: str, endpoint_id: str, since: float, now: float
) -> tuple[int, bool]:
    """Re-queue failed deliveries created at or after ``since`` (oldest first, at most
    RECOVER_MAX per call): ``(count, more_remain)``."""
    endpoint = endpoints.get(conn, account_id, endpoint_id, kinds=("subscription", "hook"))
    if not endpoint.enabled:
        raise errors.ValidationError(
            "The endpoint is disabled; enable it before recovering", field="enabled", code="endpoint_disabled"
        )
    ids_ = [
        r.id
        for r in conn.execute(
            sa.select(d.c.id)
            .where(d.c.endpoint_id == endpoint_id, d.c.status == "failed", d.c.created_at >= since)
            .order_by(d.c.created_at, d.c.id)
            .limit(RECOVER_MAX + 1)
        )
    ]
    more = len(ids_) > RECOVER_MAX
    ids_ = ids_[:RECOVER_MAX]
    if ids_:
        conn.execute(
            d.update()
            .where(d.c.id.in_(ids_), d.c.status == "failed")
            .values(status="pending", manual=True, next_attempt_at=now, fence=d.c.fence + 1, updated_at=now)
        )
        db.notify(conn, events.DELIVERIES_CHANNEL)
    return len(ids_), more
