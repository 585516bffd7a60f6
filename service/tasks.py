"""The task state machine: create, read, cancel/delete, and guarded transitions.

Every status change is one conditional UPDATE (``... WHERE status IN (:expected)``,
and for workers ``AND fence = :fence``) checked by its row count, with the event it
causes recorded in the same transaction. Two actors racing therefore produce exactly
one transition and exactly one event, on SQLite and PostgreSQL alike.

All functions take the unit of work's connection and a :class:`~service.runtime.Runtime`;
none of them commits.
"""

from __future__ import annotations

import base64
import hashlib
import types
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import db, errors, events, ids, taskspec, taskview
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


def _encode_cursor(row: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row.created_at, row.id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, task_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(created_at), str(task_id)
    except Exception:
        raise errors.ValidationError("cursor: is not a cursor this API returned", field="cursor") from None


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
        created_at, task_id = _decode_cursor(cursor)
        query = query.where(
            sa.or_(t.c.created_at < created_at, sa.and_(t.c.created_at == created_at, t.c.id < task_id))
        )
    rows = conn.execute(query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)).all()
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
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


# -- worker claims ----------------------------------------------------------------------
# A claim takes a lease (``lease_owner``/``lease_expires_at``) and bumps ``fence``; the
# claimer's later writes are conditional on that fence, so a worker whose lease ran out
# (or whose task was cancelled meanwhile) cannot overwrite newer state. Claims select
# with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers anyway) and
# take a whole batch in one transaction (PERFORMANCE.md: batch 50 is ~10x faster).

CLAIM_COLUMNS = (
    t.c.id,
    t.c.account_id,
    t.c.status,
    t.c.provider,
    t.c.provider_task_id,
    t.c.fence,
    t.c.attempts,
    t.c.progress,
    t.c.started_at,
    t.c.created_at,
    t.c.estimated_credits,
    t.c.last_progress_event_at,
    t.c.cancel_pending,
)
WAITING = ("PENDING", "THROTTLED")
_DISPATCH_LOCK = 7_307_221_001  # pg_advisory_xact_lock key serialising dispatch planning


def _lease_free(now: float) -> Any:
    return sa.or_(t.c.lease_expires_at.is_(None), t.c.lease_expires_at <= now)


def _waiting(now: float) -> Any:
    """Due tasks not yet handed to a provider."""
    return sa.and_(
        t.c.status.in_(WAITING),
        t.c.provider_task_id.is_(None),
        t.c.run_at <= now,
        _lease_free(now),
    )


def _lock(query: Any, conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _take(
    conn: Connection, ids_: list[str], where: Any, values: dict[str, Any], columns: tuple[Any, ...]
) -> list[Any]:
    if not ids_:
        return []
    return list(
        conn.execute(t.update().where(t.c.id.in_(ids_), where).values(**values).returning(*columns)).all()
    )


def claim_due(
    conn: Connection,
    rt: Runtime,
    *,
    kind: str,
    provider: str,
    owner: str,
    limit: int,
    lease: float,
    next_run_in: float,
) -> list[Any]:
    """Claim up to ``limit`` due tasks of ``provider`` for ``kind``:

    * ``"poll"`` — tasks handed to the provider and still active (for the local engine:
      renders whose worker lost its lease, to be rendered again);
    * ``"cancel"`` — tasks whose provider job must still be cancelled.

    Each claimed row gets a lease of ``lease`` seconds, a new fence and ``run_at`` moved
    ``next_run_in`` seconds ahead (the next poll is scheduled by the claim itself, so an
    unchanged poll result needs no write at all). Returns :data:`CLAIM_COLUMNS` rows.
    """
    now = rt.now()
    if kind == "poll":
        where = sa.and_(
            t.c.provider == provider,
            t.c.provider_task_id.is_not(None),
            t.c.status.in_(taskview.ACTIVE),
            t.c.cancel_pending.is_(False),
            t.c.run_at <= now,
            _lease_free(now),
        )
    elif kind == "cancel":
        where = sa.and_(
            t.c.provider == provider, t.c.cancel_pending.is_(True), t.c.run_at <= now, _lease_free(now)
        )
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    query = sa.select(t.c.id).where(where).order_by(t.c.run_at).limit(limit)
    found = [row.id for row in conn.execute(_lock(query, conn))]
    return _take(
        conn,
        found,
        where,
        {
            "lease_owner": owner,
            "lease_expires_at": now + lease,
            "run_at": now + next_run_in,
            "fence": t.c.fence + 1,
        },
        CLAIM_COLUMNS,
    )


def lock_dispatch(conn: Connection) -> None:
    """Serialise dispatch planning across processes (slot counting must not race).
    SQLite write transactions are already exclusive."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DISPATCH_LOCK})


def release_orphan_slots(conn: Connection, rt: Runtime) -> int:
    """Free the slots of waiting tasks whose submitting worker died mid-submit."""
    now = rt.now()
    result = conn.execute(
        t.update().where(_waiting(now), t.c.started_at.is_not(None)).values(started_at=None)
    )
    return int(result.rowcount or 0)


def waiting_by_account(conn: Connection, rt: Runtime) -> list[Any]:
    """``(account_id, waiting, oldest_created_at, max_jobs)`` for accounts with due waiting tasks."""
    now = rt.now()
    a = m.accounts
    sub = (
        sa.select(
            t.c.account_id,
            sa.func.count().label("waiting"),
            sa.func.min(t.c.created_at).label("oldest"),
        )
        .where(_waiting(now))
        .group_by(t.c.account_id)
        .subquery()
    )
    return list(
        conn.execute(
            sa.select(sub.c.account_id, sub.c.waiting, sub.c.oldest, a.c.max_jobs)
            .join(a, a.c.id == sub.c.account_id)
            .order_by(sub.c.oldest)
        ).all()
    )


def slots_in_use(conn: Connection, account_ids: list[str]) -> dict[str, int]:
    """Tasks holding a provider slot (``started_at`` set, still active), per account."""
    if not account_ids:
        return {}
    rows = conn.execute(
        sa.select(t.c.account_id, sa.func.count())
        .where(t.c.account_id.in_(account_ids), t.c.status.in_(taskview.ACTIVE), t.c.started_at.is_not(None))
        .group_by(t.c.account_id)
    ).all()
    return {row[0]: int(row[1]) for row in rows}


def provider_slots_in_use(conn: Connection, provider: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                t.c.provider == provider, t.c.status.in_(taskview.ACTIVE), t.c.started_at.is_not(None)
            )
        ).scalar_one()
    )


def oldest_waiting(conn: Connection, rt: Runtime, account_id: str, limit: int) -> list[str]:
    """The account's ``limit`` oldest due waiting tasks (FIFO)."""
    now = rt.now()
    query = (
        sa.select(t.c.id)
        .where(t.c.account_id == account_id, _waiting(now))
        .order_by(t.c.created_at, t.c.id)
        .limit(limit)
    )
    return [row.id for row in conn.execute(_lock(query, conn))]


def claim_for_dispatch(
    conn: Connection,
    rt: Runtime,
    task_ids: list[str],
    *,
    provider: str,
    owner: str,
    lease: float,
    start_running: bool,
) -> list[Any]:
    """Claim waiting tasks and give each a provider slot (``started_at``).

    With ``start_running`` (the local engine renders right away) the tasks also become
    RUNNING with one ``task.running`` event each, in this same transaction. Returns
    :data:`CLAIM_COLUMNS` rows plus ``spec``.
    """
    now = rt.now()
    values: dict[str, Any] = {
        "lease_owner": owner,
        "lease_expires_at": now + lease,
        "run_at": now + lease,
        "fence": t.c.fence + 1,
        "started_at": now,
        "provider": provider,
        "updated_at": now,
    }
    if start_running:
        values.update(status="RUNNING", progress=0.0, provider_task_id=t.c.id)
    rows = _take(conn, task_ids, _waiting(now), values, (*CLAIM_COLUMNS, t.c.spec))
    if start_running:
        for row in rows:
            events.emit_task_event(
                conn, task_id=row.id, event_type="task.running", now=now, file_links=rt.links
            )
    return rows


def throttle_waiting(conn: Connection, rt: Runtime, account_ids: list[str] | None) -> int:
    """Show due PENDING tasks of these accounts (None: every account) as THROTTLED: they
    wait for a slot. No event: THROTTLED is not an event type."""
    now = rt.now()
    where = sa.and_(t.c.status == "PENDING", _waiting(now))
    if account_ids is not None:
        if not account_ids:
            return 0
        where = sa.and_(where, t.c.account_id.in_(account_ids))
    return int(conn.execute(t.update().where(where).values(status="THROTTLED", updated_at=now)).rowcount or 0)


def heartbeat(
    conn: Connection,
    rt: Runtime,
    task_id: str,
    *,
    fence: int,
    lease: float,
    values: dict[str, Any],
    event: str | None = None,
) -> bool:
    """Extend a RUNNING task's lease (writing ``values``, recording ``event``) while the
    claim still holds.

    False means the claim is gone — the task was cancelled, or another worker took it
    over — and the caller must stop working on it.
    """
    now = rt.now()
    result = conn.execute(
        t.update()
        .where(t.c.id == task_id, t.c.fence == fence, t.c.status == "RUNNING")
        .values(lease_expires_at=now + lease, run_at=now + lease, updated_at=now, **values)
    )
    if result.rowcount != 1:
        return False
    if event is not None:
        events.emit_task_event(conn, task_id=task_id, event_type=event, now=now, file_links=rt.links)
    return True


def release(conn: Connection, rt: Runtime, task_id: str, *, fence: int, values: dict[str, Any]) -> bool:
    """Drop the lease (writing ``values``) if the claim still holds; whatever the status."""
    result = conn.execute(
        t.update()
        .where(t.c.id == task_id, t.c.fence == fence)
        .values(lease_owner=None, lease_expires_at=None, updated_at=rt.now(), **values)
    )
    return result.rowcount == 1
