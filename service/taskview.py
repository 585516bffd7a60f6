"""How a task looks from outside: Runway's per-status task object, plus gateway fields.

Used by ``GET /v1/tasks/{id}``, the list route and every ``task.*`` event body, so the
webhook payload is exactly what a poll would have shown at that moment.
"""

from __future__ import annotations

from typing import Any

from service import clock, links
from service import models as m

STATUSES = ("PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
ACTIVE = ("PENDING", "THROTTLED", "RUNNING")

# every column but the (possibly large) input spec
COLUMNS = tuple(c for c in m.tasks.c if c.name != "spec")


def output_urls(row: Any, file_links: links.Links) -> list[str]:
    if row.output_expired_at is not None:
        return []
    if row.output_keys:
        return [file_links.file_url(key) for key in row.output_keys]
    return list(row.upstream_output or [])


def view(row: Any, file_links: links.Links) -> dict[str, Any]:
    """The task object. Only the six Runway statuses ever appear."""
    out: dict[str, Any] = {"id": row.id, "status": row.status, "createdAt": clock.iso(row.created_at)}
    status = row.status
    if status in ACTIVE:
        out["estimatedCost"] = {"credits": float(row.estimated_credits)}
        if status == "RUNNING":
            out["progress"] = float(row.progress or 0.0)
    else:
        out["cost"] = {"credits": int(row.cost_credits or 0)}
        if status == "SUCCEEDED":
            out["output"] = output_urls(row, file_links)
            if row.output_expired_at is not None:
                out["outputExpired"] = True
        elif status == "FAILED":
            out["failure"] = row.failure or "The task failed."
            out["failureCode"] = row.failure_code
    if row.reply_ref is not None:
        out["replyRef"] = row.reply_ref
    out["updatedAt"] = clock.iso(row.updated_at)
    return out
