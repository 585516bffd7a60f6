"""Read queries only the dashboard pages need (Core SELECTs on a unit of work's connection).

Every function takes the signed-in account's id and filters by it: a tenant asking
for another tenant's task, endpoint or delivery gets ``errors.NotFound`` (404), never
a hint that the row exists. Nothing here writes; state changes go through the domain
modules (``service.tasks``, ``service.webhooks``).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import errors
from service import models as m

#: Rows shown per page of deliveries or attempts; older ones are reached over the API.
PAGE = 50
RESPONSE_EXCERPT = 2000


def timeline(conn: Connection, account_id: str, task_id: str) -> list[dict[str, Any]]:
    """The task's events in order: ``type``, ``sequence``, ``created_at`` and the status and
    progress the event carried (read from its stored body)."""
    e = m.events
    rows = conn.execute(
        sa.select(e.c.id, e.c.type, e.c.sequence, e.c.created_at, e.c.body)
        .where(e.c.account_id == account_id, e.c.task_id == task_id)
        .order_by(e.c.sequence, e.c.created_at)
    ).all()
    out = []
    for row in rows:
        try:
            data = orjson.loads(row.body).get("data", {})
        except (orjson.JSONDecodeError, AttributeError):
            data = {}
        out.append(
            {
                "id": row.id,
                "type": row.type,
                "sequence": row.sequence,
                "created_at": row.created_at,
                "status": data.get("status"),
                "progress": data.get("progress"),
                "failure": data.get("failure"),
            }
        )
    return out


def _delivery_columns() -> tuple[Any, ...]:
    d, ep, ev = m.deliveries, m.endpoints, m.events
    return (
        d.c.id,
        d.c.status,
        d.c.attempts,
        d.c.next_attempt_at,
        d.c.manual,
        d.c.last_status_code,
        d.c.last_error,
        d.c.created_at,
        d.c.updated_at,
        d.c.succeeded_at,
        d.c.task_id,
        d.c.endpoint_id,
        ep.c.url.label("endpoint_url"),
        ep.c.kind.label("endpoint_kind"),
        ev.c.type.label("event_type"),
        ev.c.sequence.label("event_sequence"),
    )


def _deliveries_from() -> Any:
    d, ep, ev = m.deliveries, m.endpoints, m.events
    return d.join(ep, ep.c.id == d.c.endpoint_id).join(ev, ev.c.id == d.c.event_id)


def task_deliveries(conn: Connection, account_id: str, task_id: str) -> list[Any]:
    """Every delivery of the task's events, oldest first, with its endpoint and event type."""
    d = m.deliveries
    return list(
        conn.execute(
            sa.select(*_delivery_columns())
            .select_from(_deliveries_from())
            .where(d.c.account_id == account_id, d.c.task_id == task_id)
            .order_by(d.c.created_at, d.c.id)
        ).all()
    )


def endpoint_deliveries(
    conn: Connection, account_id: str, endpoint_id: str, *, status: str | None = None
) -> list[Any]:
    """The endpoint's newest deliveries (one page), optionally only one status."""
    d = m.deliveries
    query = (
        sa.select(*_delivery_columns())
        .select_from(_deliveries_from())
        .where(d.c.account_id == account_id, d.c.endpoint_id == endpoint_id)
    )
    if status is not None:
        query = query.where(d.c.status == status)
    return list(conn.execute(query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(PAGE)).all())


def delivery(conn: Connection, account_id: str, delivery_id: str) -> Any:
    """One delivery with its endpoint and event (body included), or NotFound."""
    d, ev = m.deliveries, m.events
    row = conn.execute(
        sa.select(*_delivery_columns(), ev.c.body.label("event_body"))
        .select_from(_deliveries_from())
        .where(d.c.id == delivery_id, d.c.account_id == account_id)
    ).first()
    if row is None:
        raise errors.NotFound("Delivery not found", code="delivery_not_found")
    return row


def attempts(conn: Connection, delivery_id: str) -> list[Any]:
    """A delivery's attempts, newest first (the caller has checked the delivery's owner)."""
    a = m.attempts
    return list(
        conn.execute(
            sa.select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.number.desc()).limit(PAGE)
        ).all()
    )


def endpoints(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    """The account's subscriptions and REST hooks (not per-task replyUrls) with their health:
    last success, failing since, disabled reason, and the *failure streak* — failed
    attempts since the last success."""
    ep, d, a = m.endpoints, m.deliveries, m.attempts
    rows = conn.execute(
        sa.select(ep)
        .where(ep.c.account_id == account_id, ep.c.kind != "reply", ep.c.deleted_at.is_(None))
        .order_by(ep.c.created_at.desc(), ep.c.id.desc())
    ).all()
    out = []
    for row in rows:
        since = row.last_success_at or 0.0
        streak = conn.execute(
            sa.select(sa.func.count())
            .select_from(a.join(d, d.c.id == a.c.delivery_id))
            .where(
                d.c.endpoint_id == row.id,
                a.c.started_at > since,
                sa.or_(a.c.status_code.is_(None), a.c.status_code < 200, a.c.status_code >= 300),
            )
        ).scalar_one()
        failed = conn.execute(
            sa.select(sa.func.count()).where(d.c.endpoint_id == row.id, d.c.status == "failed")
        ).scalar_one()
        item = dict(row._mapping)
        item["failure_streak"] = int(streak)
        item["failed_deliveries"] = int(failed)
        out.append(item)
    return out


def endpoint(conn: Connection, account_id: str, endpoint_id: str) -> dict[str, Any]:
    """One of the account's endpoints (any kind), or NotFound."""
    ep = m.endpoints
    row = conn.execute(
        sa.select(ep).where(ep.c.id == endpoint_id, ep.c.account_id == account_id, ep.c.deleted_at.is_(None))
    ).first()
    if row is None:
        raise errors.NotFound("Endpoint not found", code="endpoint_not_found")
    return dict(row._mapping)


def input_asset(conn: Connection, account_id: str, asset_id: str) -> Any:
    """The account's live asset (storage key, content type), or NotFound."""
    a = m.assets
    row = conn.execute(
        sa.select(a).where(a.c.id == asset_id, a.c.account_id == account_id, a.c.deleted_at.is_(None))
    ).first()
    if row is None or row.storage_key is None:
        raise errors.NotFound("File not found", code="file_not_found")
    return row


def status_counts(conn: Connection, account_id: str) -> dict[str, int]:
    """How many of the account's (undeleted) tasks are in each status."""
    t = m.tasks
    rows = conn.execute(
        sa.select(t.c.status, sa.func.count())
        .where(t.c.account_id == account_id, t.c.deleted_at.is_(None))
        .group_by(t.c.status)
    ).all()
    return {status: int(count) for status, count in rows}


def failed_deliveries(conn: Connection, account_id: str) -> list[Any]:
    """The account's newest failed (given-up) deliveries across every endpoint, replyUrls included."""
    d = m.deliveries
    return list(
        conn.execute(
            sa.select(*_delivery_columns())
            .select_from(_deliveries_from())
            .where(d.c.account_id == account_id, d.c.status == "failed")
            .order_by(d.c.updated_at.desc(), d.c.id.desc())
            .limit(PAGE)
        ).all()
    )
