"""Accepting a task: validate, prepare inputs, write the task and its first event.

Shared by the Runway route and the compatibility fronts, which build the same
:class:`~service.taskspec.TaskSpec` from their own field names. Inputs are prepared by
:func:`service.media.prepare.prepare` before the task is written: uploads and data
URIs are validated now (400 naming ``character.uri``/``reference.uri``), data URIs
are stored as assets so the spec does not keep their base64, and the reference's
duration, when known, sets the credit estimate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from service import tasks, taskspec
from service.db import Database
from service.media import assets as media_assets
from service.media import prepare as media_prepare
from service.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class CreateResult:
    row: Any
    reply_secret: str | None
    created: bool

    def response(self) -> dict[str, Any]:
        """Runway's create answer; ``replySecret`` added when the task has a replyUrl."""
        body: dict[str, Any] = {
            "id": self.row.id,
            "estimatedCost": {"credits": float(self.row.estimated_credits)},
        }
        if self.reply_secret is not None:
            body["replySecret"] = self.reply_secret
        return body


async def create_from_spec(
    db: Database,
    rt: Runtime,
    *,
    account: dict[str, Any],
    spec: taskspec.TaskSpec,
    idempotency_key: str | None = None,
    digest: str | None = None,
    reference_seconds: float | None = None,
) -> CreateResult:
    """Prepare the spec's inputs and create the task with their asset rows, in one unit.

    Files stored for a task that ends up not created (an idempotent replay, an error)
    are deleted again.
    """
    prepared = await media_prepare.prepare(db, rt, account_id=account["id"], spec=spec)
    if reference_seconds is None:
        reference_seconds = prepared.reference_seconds
    estimate = tasks.estimate_credits(reference_seconds)

    def unit(conn: Any) -> tuple[Any, str | None, bool]:
        row, secret, created = tasks.create(
            conn,
            rt,
            account=account,
            spec=prepared.spec,
            provider=rt.settings.provider,
            estimated_credits=estimate,
            idempotency_key=idempotency_key,
            digest=digest,
        )
        if created:
            media_assets.insert(conn, prepared.rows_for(row.id))
        return row, secret, created

    try:
        row, secret, created = await db.write(unit)
    except BaseException:
        prepared.discard(rt)
        raise
    if not created:
        prepared.discard(rt)
    return CreateResult(row=row, reply_secret=secret, created=created)


async def create_task(
    db: Database, rt: Runtime, *, account: dict[str, Any], body: Any, idempotency_key: str | None = None
) -> CreateResult:
    """Validate a Runway create body and create the task (idempotently when keyed)."""
    spec = taskspec.parse(body, allow=rt.allow)
    digest = tasks.request_hash(body) if idempotency_key is not None else None
    return await create_from_spec(
        db, rt, account=account, spec=spec, idempotency_key=idempotency_key, digest=digest
    )
