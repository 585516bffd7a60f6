"""The transactional outbox: events and the deliveries they fan out to.

:func:`emit` is called inside the same unit of work as the state change that causes
the event, so the change, the event and its delivery rows commit together or not at
all (a crash before commit leaves none of them; after commit, the delivery worker will
get to them even across restarts). The event body is serialised here, once: every
attempt and replay of a delivery sends exactly these bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import clock, db, ids, links, taskspec, taskview
from service import models as m
from service.webhooks import signing

DELIVERIES_CHANNEL = "deliveries"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return signing.new_secret()


def create_reply_endpoint(
    conn: Connection,
    *,
    account_id: str,
    task_id: str,
    url: str,
    event_types: tuple[str, ...] | None,
    now: float,
) -> dict[str, Any]:
    """The implicit one-task endpoint behind a task's replyUrl, with its own secret.

    Terminal events always reach a replyUrl, whatever ``webhookEvents`` says.
    """
    types = None
    if event_types is not None:
        types = list(dict.fromkeys([*event_types, *taskspec.TERMINAL_EVENT_TYPES]))
    row = {
        "id": ids.prefixed("ep"),
        "account_id": account_id,
        "kind": "reply",
        "task_id": task_id,
        "url": url,
        "event_types": types,
        "secret": signing.new_secret(),
        "enabled": True,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(m.endpoints.insert().values(**row))
    return row


def reply_secret(conn: Connection, task_id: str) -> str | None:
    return conn.execute(
        sa.select(m.endpoints.c.secret).where(m.endpoints.c.kind == "reply", m.endpoints.c.task_id == task_id)
    ).scalar_one_or_none()


def _wants(endpoint: Any, event_type: str, task_id: str | None) -> bool:
    if endpoint.kind == "reply" and endpoint.task_id != task_id:
        return False
    return endpoint.event_types is None or event_type in endpoint.event_types


_ENDPOINTS_FOR = sa.select(
    m.endpoints.c.id, m.endpoints.c.kind, m.endpoints.c.task_id, m.endpoints.c.event_types
).where(
    m.endpoints.c.account_id == sa.bindparam("account_id"),
    m.endpoints.c.enabled.is_(True),
    m.endpoints.c.deleted_at.is_(None),
    sa.or_(m.endpoints.c.kind != "reply", m.endpoints.c.task_id == sa.bindparam("task_id")),
)
_INSERT_DELIVERIES = m.deliveries.insert()
_INSERT_EVENT = m.events.insert()


def fan_out(
    conn: Connection, *, event_id: str, account_id: str, task_id: str | None, event_type: str, now: float
) -> int:
    """Create one pending delivery per enabled endpoint that wants this event.

    Statements on this path are built once at import (PERFORMANCE.md: building a Core
    statement per call costs several times its execution).
    """
    candidates = conn.execute(_ENDPOINTS_FOR, {"account_id": account_id, "task_id": task_id}).all()
    rows = [
        _delivery_row(event_id, ep.id, account_id, task_id, now)
        for ep in candidates
        if _wants(ep, event_type, task_id)
    ]
    if rows:
        conn.execute(_INSERT_DELIVERIES, rows)
        db.notify(conn, DELIVERIES_CHANNEL)
    return len(rows)


def _delivery_row(
    event_id: str, endpoint_id: str, account_id: str, task_id: str | None, now: float
) -> dict[str, Any]:
    return {
        "id": ids.prefixed("msg"),
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "account_id": account_id,
        "task_id": task_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _insert_event(
    conn: Connection,
    *,
    account_id: str,
    event_type: str,
    data: dict[str, Any],
    now: float,
    task_id: str | None,
    sequence: int,
) -> str:
    event_id = ids.prefixed("evt")
    body = orjson.dumps({"type": event_type, "timestamp": clock.iso(now), "data": data}).decode()
    conn.execute(
        _INSERT_EVENT,
        {
            "id": event_id,
            "account_id": account_id,
            "task_id": task_id,
            "type": event_type,
            "sequence": sequence,
            "body": body,
            "created_at": now,
        },
    )
    return event_id


def record_for(
    conn: Connection, *, account_id: str, endpoint_id: str, event_type: str, data: dict[str, Any], now: float
) -> tuple[str, str]:
    """An event delivered to one endpoint only (test events): ``(event_id, delivery_id)``."""
    event_id = _insert_event(
        conn, account_id=account_id, event_type=event_type, data=data, now=now, task_id=None, sequence=0
    )
    row = _delivery_row(event_id, endpoint_id, account_id, None, now)
    conn.execute(m.deliveries.insert().values(**row))
    db.notify(conn, DELIVERIES_CHANNEL)
    return event_id, row["id"]


def record(
    conn: Connection,
    *,
    account_id: str,
    event_type: str,
    data: dict[str, Any],
    now: float,
    task_id: str | None = None,
    sequence: int = 0,
) -> str:
    """Insert one event with its serialised envelope and fan it out; return its id."""
    event_id = _insert_event(
        conn,
        account_id=account_id,
        event_type=event_type,
        data=data,
        now=now,
        task_id=task_id,
        sequence=sequence,
    )
    fan_out(conn, event_id=event_id, account_id=account_id, task_id=task_id, event_type=event_type, now=now)
    return event_id


_BUMP_SEQUENCE = (
    m.tasks.update()
    .where(m.tasks.c.id == sa.bindparam("task_id_"))
    .values(sequence=m.tasks.c.sequence + 1)
    .returning(*taskview.COLUMNS)
)


def emit_task_event(
    conn: Connection, *, task_id: str, event_type: str, now: float, file_links: links.Links
) -> str:
    """Record a ``task.*`` event for the task as it now stands (same transaction).

    ``data`` is the task exactly as ``GET /v1/tasks/{id}`` shows it, plus ``replyRef``
    and a per-task increasing ``sequence`` so receivers can drop stale updates.
    """
    row = conn.execute(_BUMP_SEQUENCE, {"task_id_": task_id}).first()
    if row is None:  # pragma: no cover - callers hold the row
        raise LookupError(task_id)
    return emit_for_row(conn, row, event_type=event_type, now=now, file_links=file_links)


def emit_for_row(conn: Connection, row: Any, *, event_type: str, now: float, file_links: links.Links) -> str:
    """Record a ``task.*`` event for ``row``, whose ``sequence`` the caller has already
    advanced in this transaction (a new task is inserted with sequence 1)."""
    data = taskview.view(row, file_links)
    data["replyRef"] = row.reply_ref
    data["sequence"] = row.sequence
    return record(
        conn,
        account_id=row.account_id,
        event_type=event_type,
        data=data,
        now=now,
        task_id=row.id,
        sequence=row.sequence,
    )
