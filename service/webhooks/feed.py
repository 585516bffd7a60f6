"""The event feed: ``GET /v1/events`` for polling triggers (Zapier, Make, no-code tools).

Newest first, each item ``{"id", "type", "timestamp", "data"}`` — the exact envelope
receivers get, plus the event's stable id for de-duplication. When nothing matches, the
feed holds one documented sample (``"sample": true``, a fixed id per type) so that a
trigger can be set up before the first real event; a poller that de-duplicates by id
sees it at most once.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import clock, errors, taskspec
from service import models as m
from service.webhooks import endpoints

ev = m.events
FEED_TYPES = (*taskspec.EVENT_TYPES, endpoints.DISABLED_EVENT)
LIMIT_MAX = 100


def parse_type(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in FEED_TYPES:
        raise errors.ValidationError(f"type: must be one of {', '.join(FEED_TYPES)}", field="type")
    return value


def sample(event_type: str | None, now: float) -> dict[str, Any]:
    kind = event_type or "task.succeeded"
    data: dict[str, Any] = endpoints.sample_task(now)
    if kind == endpoints.DISABLED_EVENT:
        data = {
            "endpointId": "ep_sample",
            "kind": "subscription",
            "url": "https://hooks.example.com/callboard",
            "reason": "no successful delivery for 5 days",
            "disabledAt": clock.iso(now),
        }
    elif kind != "task.succeeded":
        status = {
            "task.created": "PENDING",
            "task.running": "RUNNING",
            "task.progress": "RUNNING",
            "task.failed": "FAILED",
            "task.cancelled": "CANCELLED",
        }[kind]
        data = {k: v for k, v in data.items() if k not in ("output", "cost")}
        data["status"] = status
        if status in ("PENDING", "RUNNING"):
            data["estimatedCost"] = {"credits": 50.0}
        else:
            data["cost"] = {"credits": 0}
        if status == "RUNNING":
            data["progress"] = 0.4
        if status == "FAILED":
            data["failure"] = "The character image has no detectable face."
            data["failureCode"] = "ASSET.INVALID"
    return {
        "id": f"evt_sample_{kind.replace('.', '_')}",
        "type": kind,
        "timestamp": clock.iso(now),
        "data": data,
        "sample": True,
    }


def list_events(
    conn: Connection, account_id: str, *, event_type: str | None, limit: int, now: float
) -> list[dict[str, Any]]:
    query = sa.select(ev.c.id, ev.c.body).where(ev.c.account_id == account_id)
    if event_type is not None:
        query = query.where(ev.c.type == event_type)
    else:
        query = query.where(ev.c.type != endpoints.TEST_EVENT)
    rows = conn.execute(query.order_by(ev.c.created_at.desc(), ev.c.id.desc()).limit(limit)).all()
    if not rows:
        return [sample(event_type, now)]
    return [{"id": r.id, **orjson.loads(r.body)} for r in rows]
