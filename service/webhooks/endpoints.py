"""Webhook endpoints (domain): subscriptions, REST hooks, secrets, test events, disabling.

An endpoint is a destination with its own secret. ``kind`` is ``subscription``
(``/v1/webhooks``), ``hook`` (Zapier/Make REST Hooks, ``/v1/hooks``) or ``reply`` (the
implicit one-task endpoint behind a task's replyUrl, made by ``service.events``).
Every function takes the unit of work's connection and never commits; reading or
changing another account's endpoint is a NotFound, exactly like an unknown id.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import clock, errors, events, ids, netguard, taskspec
from service import models as m
from service.webhooks import signing

e = m.endpoints
d = m.deliveries
DISABLED_EVENT = "webhook.disabled"
TEST_EVENT = "webhook.test"
EVENT_TYPES = (*taskspec.EVENT_TYPES, DISABLED_EVENT)
ROTATION_OVERLAP = 24 * 3600.0  # the old secret keeps signing this long after a rotation
URL_MAX = 2048
RATE_MAX = 10_000
CONCURRENCY_MAX = 100
_FIELDS = {"url", "eventTypes", "description", "enabled", "rateLimit", "maxConcurrency"}


def check_url(value: Any, field: str, allow: netguard.Allowlist) -> str:
    """A destination URL as written: http(s), no credentials, no literal private host."""
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(f"{field}: must be a URL string", field=field)
    if len(value) > URL_MAX:
        raise errors.ValidationError(f"{field}: must be at most {URL_MAX} characters", field=field)
    try:
        netguard.check_url(value, allow)
    except netguard.UrlRejected as exc:
        raise errors.ValidationError(f"{field}: the URL {exc}", field=field) from None
    return value


def _event_types(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise errors.ValidationError(
            f"{field}: must be a non-empty list of event types, or null", field=field
        )
    for item in value:
        if item not in EVENT_TYPES:
            raise errors.ValidationError(
                f"{field}: unknown event type {item!r}; known: {', '.join(EVENT_TYPES)}", field=field
            )
    return list(dict.fromkeys(value))


def _bounded_int(value: Any, field: str, lo: int, hi: int, *, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        extra = ", or null" if nullable else ""
        raise errors.ValidationError(f"{field}: must be an integer from {lo} to {hi}{extra}", field=field)
    return value


def parse_subscription(body: Any, allow: netguard.Allowlist, *, partial: bool) -> dict[str, Any]:
    """Column values from a create (``partial=False``) or PATCH body; 400 naming the field."""
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise errors.ValidationError(f"{unknown[0]}: is not a recognised field", field=unknown[0])
    if not partial and "url" not in body:
        raise errors.ValidationError("url: is required", field="url")
    values: dict[str, Any] = {}
    if "url" in body:
        values["url"] = check_url(body["url"], "url", allow)
    if "eventTypes" in body:
        values["event_types"] = _event_types(body["eventTypes"], "eventTypes")
    if "description" in body:
        text = body["description"]
        if text is not None and (not isinstance(text, str) or len(text) > 1000):
            raise errors.ValidationError(
                "description: must be a string of at most 1000 characters", field="description"
            )
        values["description"] = text
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise errors.ValidationError("enabled: must be true or false", field="enabled")
        values["enabled"] = body["enabled"]
    if "rateLimit" in body:
        values["rate_limit"] = _bounded_int(body["rateLimit"], "rateLimit", 1, RATE_MAX, nullable=True)
    if "maxConcurrency" in body:
        values["max_concurrency"] = _bounded_int(
            body["maxConcurrency"], "maxConcurrency", 1, CONCURRENCY_MAX, nullable=False
        )
    return values


def create(conn: Connection, *, account_id: str, kind: str, values: dict[str, Any], now: float) -> Any:
    """A new endpoint of ``kind`` with a fresh secret; returns the row (secret included)."""
    row = {
        "id": ids.prefixed("hook" if kind == "hook" else "ep"),
        "account_id": account_id,
        "kind": kind,
        "event_types": None,
        "secret": signing.new_secret(),
        "enabled": True,
        "max_concurrency": 10,
        "in_flight": 0,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    conn.execute(e.insert().values(**row))
    return get(conn, account_id, row["id"], kinds=(kind,))


def get(
    conn: Connection, account_id: str, endpoint_id: str, *, kinds: tuple[str, ...] = ("subscription",)
) -> Any:
    row = conn.execute(
        sa.select(e).where(
            e.c.id == endpoint_id, e.c.account_id == account_id, e.c.kind.in_(kinds), e.c.deleted_at.is_(None)
        )
    ).first()
    if row is None:
        raise errors.NotFound("Webhook endpoint not found", code="webhook_not_found")
    return row


def list_endpoints(
    conn: Connection, account_id: str, *, kinds: tuple[str, ...] = ("subscription",)
) -> list[Any]:
    return list(
        conn.execute(
            sa.select(e)
            .where(e.c.account_id == account_id, e.c.kind.in_(kinds), e.c.deleted_at.is_(None))
            .order_by(e.c.created_at.desc(), e.c.id.desc())
        ).all()
    )


def update(conn: Connection, *, account_id: str, endpoint_id: str, values: dict[str, Any], now: float) -> Any:
    """Apply a PATCH. Re-enabling clears the disabled reason and the failure clock."""
    current = get(conn, account_id, endpoint_id)
    changes = dict(values)
    if changes.get("enabled") is True and not current.enabled:
        changes.update(disabled_reason=None, disabled_at=None, failing_since=None)
    elif changes.get("enabled") is False and current.enabled:
        changes.update(disabled_reason="disabled by the account", disabled_at=now)
    if changes:
        conn.execute(e.update().where(e.c.id == endpoint_id).values(updated_at=now, **changes))
        if changes.get("enabled") is False:
            _close_pending(conn, endpoint_id, "endpoint disabled", now)
    return get(conn, account_id, endpoint_id)


def _close_pending(conn: Connection, endpoint_id: str, reason: str, now: float) -> None:
    """Stop the endpoint's queued deliveries (in-flight ones finish and record normally);
    ``recover`` can resend them once the endpoint is back."""
    conn.execute(
        d.update()
        .where(
            d.c.endpoint_id == endpoint_id,
            d.c.status == "pending",
            sa.or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
        )
        .values(status="failed", next_attempt_at=None, last_error=reason[:500], updated_at=now)
    )


def delete(
    conn: Connection, *, account_id: str, endpoint_id: str, now: float, kinds: tuple[str, ...]
) -> None:
    get(conn, account_id, endpoint_id, kinds=kinds)
    conn.execute(
        e.update()
        .where(e.c.id == endpoint_id, e.c.deleted_at.is_(None))
        .values(deleted_at=now, enabled=False, updated_at=now)
    )
    _close_pending(conn, endpoint_id, "endpoint deleted", now)


def rotate_secret(conn: Connection, *, account_id: str, endpoint_id: str, now: float) -> Any:
    """A new secret; the current one keeps signing (alongside) for 24 hours."""
    current = get(conn, account_id, endpoint_id)
    conn.execute(
        e.update()
        .where(e.c.id == endpoint_id, e.c.secret == current.secret)
        .values(
            secret=signing.new_secret(),
            previous_secret=current.secret,
            previous_secret_expires_at=now + ROTATION_OVERLAP,
            updated_at=now,
        )
    )
    return get(conn, account_id, endpoint_id)


def sample_task(now: float) -> dict[str, Any]:
    """A representative ``task.succeeded`` payload (test events, the empty event feed)."""
    stamp = clock.iso(now)
    return {
        "id": "00000000-0000-4000-8000-000000000000",
        "status": "SUCCEEDED",
        "createdAt": stamp,
        "cost": {"credits": 50},
        "output": ["https://callboard.example/files/sample/output.mp4"],
        "replyRef": "your-reference",
        "updatedAt": stamp,
        "sequence": 3,
    }


def send_test(conn: Connection, *, account_id: str, endpoint_id: str, now: float) -> tuple[str, str]:
    """Queue a signed ``webhook.test`` event for this endpoint only: ``(event_id, delivery_id)``."""
    endpoint = get(conn, account_id, endpoint_id)
    if not endpoint.enabled:
        raise errors.ValidationError(
            "The endpoint is disabled; enable it before sending a test event",
            field="enabled",
            code="endpoint_disabled",
        )
    data = {**sample_task(now), "test": True}
    return events.record_for(
        conn, account_id=account_id, endpoint_id=endpoint_id, event_type=TEST_EVENT, data=data, now=now
    )


def disable(conn: Connection, endpoint_id: str, *, reason: str, now: float, emit: bool = True) -> bool:
    """Disable an enabled endpoint with ``reason``; False if it already was. Queued
    deliveries stop, and (``emit``) a ``webhook.disabled`` event goes to the account's
    other subscribers — disabling is an event too."""
    applied = conn.execute(
        e.update()
        .where(e.c.id == endpoint_id, e.c.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now)
    ).rowcount
    if applied != 1:
        return False
    _close_pending(conn, endpoint_id, f"endpoint disabled: {reason}", now)
    if emit:
        row = conn.execute(sa.select(e.c.account_id, e.c.url, e.c.kind).where(e.c.id == endpoint_id)).one()
        events.record(
            conn,
            account_id=row.account_id,
            event_type=DISABLED_EVENT,
            data={
                "endpointId": endpoint_id,
                "kind": row.kind,
                "url": row.url,
                "reason": reason,
                "disabledAt": clock.iso(now),
            },
            now=now,
        )
    return True


def handle_gone(conn: Connection, endpoint_id: str, kind: str, *, now: float) -> None:
    """A 410 Gone: a REST hook is deleted (Zapier's unsubscribe signal), a subscription
    is disabled, a replyUrl stops receiving its task's events."""
    if kind == "hook":
        applied = conn.execute(
            e.update()
            .where(e.c.id == endpoint_id, e.c.deleted_at.is_(None))
            .values(
                deleted_at=now,
                enabled=False,
                disabled_reason="the target answered 410 Gone",
                disabled_at=now,
                updated_at=now,
            )
        ).rowcount
        if applied:
            _close_pending(conn, endpoint_id, "endpoint deleted: the target answered 410 Gone", now)
        return
    disable(conn, endpoint_id, reason="the endpoint answered 410 Gone", now=now, emit=kind != "reply")


# -- REST Hooks (Zapier / Make) --------------------------------------------------------


def create_hook(
    conn: Connection, *, account_id: str, body: Any, allow: netguard.Allowlist, now: float
) -> Any:
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    unknown = sorted(set(body) - {"target_url", "event"})
    if unknown:
        raise errors.ValidationError(f"{unknown[0]}: is not a recognised field", field=unknown[0])
    url = check_url(body.get("target_url"), "target_url", allow)
    event = body.get("event")
    if event not in EVENT_TYPES:
        raise errors.ValidationError(f"event: must be one of {', '.join(EVENT_TYPES)}", field="event")
    return create(
        conn, account_id=account_id, kind="hook", values={"url": url, "event_types": [event]}, now=now
    )


def delete_hook(conn: Connection, *, account_id: str, hook_id: str, now: float) -> None:
    """Idempotent: deleting the account's hook again (or one a 410 removed) is fine;
    an id the account never owned is a NotFound, like any other foreign id."""
    row = conn.execute(
        sa.select(e.c.id, e.c.deleted_at).where(
            e.c.id == hook_id, e.c.account_id == account_id, e.c.kind == "hook"
        )
    ).first()
    if row is None:
        raise errors.NotFound("Hook not found", code="hook_not_found")
    if row.deleted_at is None:
        delete(conn, account_id=account_id, endpoint_id=hook_id, now=now, kinds=("hook",))
