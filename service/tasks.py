"""The task state machine: create, read, cancel/delete, and guarded transitions.

Every status change is one conditional UPDATE (``... WHERE status IN (:expected)``,
and for workers ``AND fence = :fence``) checked by its row count, with the event it
causes recorded in the same transaction. Two actors racing therefore produce exactly
one transition and exactly one event, on SQLite and PostgreSQL alike.

All functions take the unit of work's connection and a :class:`~service.runtime.Runtime`;
none of them commits.
"""

from __future__ import annotations

import hashlib
import types
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import cursors, db, errors, events, ids, taskspec, taskview
from service import models as m
from service.runtime import Runtime

t = m.tasks
WORK_CHANNEL = "tasks"
CREDITS_PER_SECOND = 5
MAX_ESTIMATE = CREDITS_PER_SECOND * 30


def request_hash(body: Any) -> str:
    """A stable digest of a JSON body (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def estimate_credits(reference_seconds: float | None) -> float:
    """5 credits per second of reference; the 30 s maximum while the length is unknown."""
    if reference_seconds is None:
        return float(MAX_ESTIMATE)
    return float(CREDITS_PER_SECOND * max(3, min(30, round(reference_seconds))))


def _find_by_key(conn: Connection, account_id: str, key: str) -> Any:
    return conn.execute(
        sa.select(*taskview.COLUMNS).where(t.c.account_id == account_id, t.c.idempotency_key == key)
    ).first()


def _replay(conn: Connection, existing: Any, digest: str | None) -> tuple[Any, str | None, bool]:
    if existing.request_hash != digest:
        raise errors.IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request body", field="Idempotency-Key"
        )
    return existing, events.reply_secret(conn, existing.id), False


def create(
    conn: Connection,
    rt: Runtime,
    *,
    account: dict[str, Any],
    spec: taskspec.TaskSpec,
    provider: str,
    estimated_credits: float,
    idempotency_key: str | None = None,
    digest: str | None = None,
) -> tuple[Any, str | None, bool]:
    """Create a PENDING task (or find the one this Idempotency-Key made before).

    Returns ``(row, reply_secret, created)``. Same key + same body gives back the
    original task; same key + another body raises IdempotencyMismatch. Concurrent
    identical requests end with one task: the unique (account, key) constraint makes
    the loser re-read the winner's row.
    """
    if idempotency_key is not None:
        existing = _find_by_key(conn, account["id"], idempotency_key)
        if existing is not None:
            return _replay(conn, existing, digest)
    now = rt.now()
    task_id = ids.task_id()
    reply_url = spec.reply_url or account.get("default_reply_url")
    values = {
        "id": task_id,
        "account_id": account["id"],
        "model": spec.model,
        "status": "PENDING",
        "spec": spec.to_json(),
        "provider": provider,
        "estimated_credits": estimated_credits,
        "reply_url": reply_url,
        "reply_ref": spec.reply_ref,
        "webhook_events": list(spec.webhook_events) if spec.webhook_events is not None else None,
        "idempotency_key": idempotency_key,
        "request_hash": digest,
        "created_at": now,
        "updated_at": now,
        "run_at": now,
    }
    values["sequence"] = 1  # task.created below is the task's first event
    if idempotency_key is None:
        conn.execute(_INSERT_TASK, values)
    else:
        try:
            with conn.begin_nested():
                conn.execute(_INSERT_TASK, values)
        except sa.exc.IntegrityError:
            existing = _find_by_key(conn, account["id"], idempotency_key)
            if existing is None:
                raise
            return _replay(conn, existing, digest)
    secret = None
    if reply_url:
        endpoint = events.create_reply_endpoint(
            conn,
            account_id=account["id"],
            task_id=task_id,
            url=reply_url,
            event_types=spec.webhook_events,
            now=now,
        )
        secret = endpoint["secret"]
    row = _row_from_values(values)
    events.emit_for_row(conn, row, event_type="task.created", now=now, file_links=rt.links)
    db.notify(conn, WORK_CHANNEL)
    return row, secret, True


_INSERT_TASK = t.insert()
_COLUMN_DEFAULTS = {
    c.name: (c.default.arg if c.default is not None and c.default.is_scalar else None)
    for c in taskview.COLUMNS
}


def _row_from_values(values: dict[str, Any]) -> Any:
    """The new task as a row-like object (what a SELECT would give back), without the
    round trip: every view column, from the inserted values or the column defaults."""
    return types.SimpleNamespace(**{**_COLUMN_DEFAULTS, **{k: v for k, v in values.items() if k != "spec"}})


def get(conn: Connection, account_id: str, task_id: str) -> Any:
    """The account's task, or NotFound (also for other accounts' and deleted tasks)."""
    row = conn.execute(
        sa.select(*taskview.COLUMNS).where(
            t.c.id == task_id, t.c.account_id == account_id, t.c.deleted_at.is_(None)
        )
    ).first()
    if row is None:
        raise errors.NotFound("Task not found", code="task_not_found")
    return row


def get_spec(conn: Connection, task_id: str) -> dict[str, Any]:
    return conn.execute(sa.select(t.c.spec).where(t.c.id == task_id)).scalar_one()


def list_tasks(
    conn: Connection,
    account_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Any], str | None]:
    """The account's tasks newest first; ``(rows, next_cursor)``."""
    query = sa.select(*taskview.COLUMNS).where(t.c.account_id == account_id, t.c.deleted_at.is_(None))
    if status is not None:
        query = query.where(t.c.status == status)
    if cursor is not None:
        created_at, task_id = cursors.decode(cursor)
        query = query.where(
            sa.or_(t.c.created_at < created_at, sa.and_(t.c.created_at == created_at, t.c.id < task_id))
        )
    rows = conn.execute(query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)).all()
    next_cursor = cursors.encode(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def transition(
    conn: Connection,
    rt: Runtime,
    task_id: str,
    *,
    expected: tuple[str, ...],
    values: dict[str, Any],
    event: str | None = None,
    fence: int | None = None,
) -> bool:
    """Apply ``values`` if the task is still in one of ``expected`` (and, for a worker,
    still under the fence it claimed with); record ``event`` if it applied.

    Returns False when another actor got there first: the caller must then re-read
    rather than assume.
    """
    now = rt.now()
    query = t.update().where(t.c.id == task_id, t.c.status.in_(expected))
    if fence is not None:
        query = query.where(t.c.fence == fence)
    result = conn.execute(query.values(updated_at=now, **values))
    if result.rowcount != 1:
        return False
    if event is not None:
        events.emit_task_event(conn, task_id=task_id, event_type=event, now=now, file_links=rt.links)
    return True


def cancel_or_delete(conn: Connection, rt: Runtime, account_id: str, task_id: str) -> str:
    """DELETE semantics: cancel an unfinished task, delete a finished one.

    Returns ``"cancelled"`` or ``"deleted"``. Cancelling is immediate for the client;
    if a provider job exists, ``cancel_pending`` schedules the provider cancel for the
    worker, and the fence bump makes any worker still holding the old claim unable to
    write over the CANCELLED state.
    """
    for _ in range(3):
        row = get(conn, account_id, task_id)
        now = rt.now()
        if row.status in taskview.TERMINAL:
            conn.execute(
                t.update()
                .where(t.c.id == task_id, t.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now)
            )
            return "deleted"
        needs_provider_cancel = row.provider_task_id is not None or row.status == "RUNNING"
        applied = transition(
            conn,
            rt,
            task_id,
            expected=(row.status,),
            values={
                "status": "CANCELLED",
                "cost_credits": 0,
                "finished_at": now,
                "cancel_pending": needs_provider_cancel,
                "run_at": now if needs_provider_cancel else None,
                "fence": t.c.fence + 1,
                "lease_owner": None,
                "lease_expires_at": None,
            },
            event="task.cancelled",
        )
        if applied:
            if needs_provider_cancel:
                db.notify(conn, WORK_CHANNEL)
            return "cancelled"
    raise errors.Unavailable("The task is changing too quickly; try again")  # pragma: no cover
