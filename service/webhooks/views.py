"""How endpoints, hooks, deliveries and attempts look over the API (camelCase JSON).

Secrets never appear here: they are returned only by create, reveal and rotate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service import clock


def _iso(value: float | None) -> str | None:
    return None if value is None else clock.iso(value)


def endpoint(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "eventTypes": row.event_types,
        "enabled": bool(row.enabled),
        "disabledReason": row.disabled_reason,
        "disabledAt": _iso(row.disabled_at),
        "rateLimit": row.rate_limit,
        "maxConcurrency": row.max_concurrency,
        "lastSuccessAt": _iso(row.last_success_at),
        "failingSince": _iso(row.failing_since),
        "createdAt": clock.iso(row.created_at),
        "updatedAt": clock.iso(row.updated_at),
    }


def hook(row: Any) -> dict[str, Any]:
    return {"id": row.id, "target_url": row.url, "event": (row.event_types or [None])[0]}


def attempt(row: Any) -> dict[str, Any]:
    return {
        "number": row.number,
        "trigger": row.trigger,
        "startedAt": clock.iso(row.started_at),
        "statusCode": row.status_code,
        "latencyMs": None if row.latency_ms is None else round(row.latency_ms, 2),
        "errorClass": row.error_class,
        "responseBody": row.response_body,
        "nextAttemptAt": _iso(row.next_attempt_at),
    }


def delivery(row: Any, attempts: Sequence[Any]) -> dict[str, Any]:
    """``id`` is the ``webhook-id`` header the receiver saw (the same on every attempt)."""
    return {
        "id": row.id,
        "eventId": row.event_id,
        "eventType": row.event_type,
        "endpointId": row.endpoint_id,
        "taskId": row.task_id,
        "status": row.status,
        "attemptCount": row.attempts,
        "nextAttemptAt": _iso(row.next_attempt_at) if row.status == "pending" else None,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "createdAt": clock.iso(row.created_at),
        "succeededAt": _iso(row.succeeded_at),
        "attempts": [attempt(a) for a in attempts],
    }
