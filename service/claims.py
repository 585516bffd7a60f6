"""Worker claims on tasks: batches taken under a lease and a new fence.

The worker side of the task state machine (``service.tasks`` holds the API side):
:func:`claim_due` takes due tasks for one kind of work in one transaction (PostgreSQL:
``FOR UPDATE SKIP LOCKED``; SQLite: one writer), the dispatch helpers count slots per
account and per provider, and :func:`heartbeat` / :func:`release` are the fenced writes
a claim holder makes afterwards. None of these functions commits.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import events, taskview
from service import models as m
from service.runtime import Runtime

t = m.tasks

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
