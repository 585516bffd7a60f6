"""The delivery queue in the database: claim due deliveries, record attempts, release.

Every function takes the unit of work's connection and never commits. Claims follow
the task claims' pattern (PRODUCT.md): a due, unleased ``pending`` row is leased to one
worker (``lease_owner``/``lease_expires_at``) and its ``fence`` is bumped; the outcome
is written only ``WHERE id = :id AND fence = :fence``, so a worker that lost its lease
(stalled, or SIGKILLed and restarted) cannot overwrite what a newer claim recorded.
A killed worker's claim simply expires and the row is sent again with the same
``webhook-id`` — at least once, never lost.

On PostgreSQL due rows are locked with ``FOR UPDATE SKIP LOCKED`` (workers never queue
behind each other) and the endpoints' rows with ``FOR UPDATE`` in id order, which makes
the per-endpoint concurrency cap and rate limit exact across workers. SQLite write
transactions are serialised already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import ids
from service import models as m
from service.webhooks import endpoints, policy

d = m.deliveries
e = m.endpoints
EXCERPT_CHARS = 20 * 1024
HOLD_SECONDS = 1.0  # how far a row held back by an endpoint's concurrency cap is pushed


@dataclasses.dataclass(frozen=True)
class Claimed:
    """One leased delivery with everything needed to send it."""

    id: str  # the webhook-id
    fence: int
    attempts: int  # attempts made before this one
    manual: bool
    endpoint_id: str
    kind: str
    url: str
    secrets: tuple[str, ...]  # current secret first, then a previous one still in its overlap
    body: bytes


@dataclasses.dataclass(frozen=True)
class Result:
    """What one HTTP attempt gave. ``status_code`` is None when no response arrived."""

    claimed: Claimed
    started_at: float
    status_code: int | None = None
    latency_ms: float | None = None
    error_class: str | None = None
    error: str | None = None
    response_body: str | None = None
    retry_after: str | None = None


def _signing_secrets(ep: Any, now: float) -> tuple[str, ...]:
    if ep.previous_secret and (ep.previous_secret_expires_at or 0) > now:
        return (ep.secret, ep.previous_secret)
    return (ep.secret,)


def claim(conn: Connection, *, now: float, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries, honouring each endpoint's caps.

    Rows of a disabled or deleted endpoint are closed as failed instead. Endpoints with
    every concurrency slot in use are left out of the window, so one slow, backlogged
    endpoint cannot starve the others; rows an endpoint's rate limit holds back are
    moved to the times their slots open. Neither uses up an attempt. Rows beyond a
    partly free endpoint's room stay as they are: they go when its requests finish.
    """
    postgres = conn.dialect.name == "postgresql"
    # endpoints whose every concurrency slot is leased: their rows are left out of the
    # claim window (only leased rows are counted, a short index range)
    saturated = (
        sa.select(d.c.endpoint_id)
        .join(e, e.c.id == d.c.endpoint_id)
        .where(d.c.lease_expires_at > now, d.c.status == "pending")
        .group_by(d.c.endpoint_id, e.c.max_concurrency)
        .having(sa.func.count() >= e.c.max_concurrency)
    )
    due = (
        sa.select(d.c.id, d.c.endpoint_id, d.c.fence, d.c.attempts, d.c.manual, d.c.event_id)
        .where(
            d.c.status == "pending",
            d.c.next_attempt_at <= now,
            sa.or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
            d.c.endpoint_id.not_in(saturated.scalar_subquery()),
        )
        .order_by(d.c.next_attempt_at)
        .limit(limit)
    )
    if postgres:
        due = due.with_for_update(of=d, skip_locked=True)
    rows = conn.execute(due).all()
    if not rows:
        return []
    endpoint_ids = sorted({r.endpoint_id for r in rows})
    eq = (
        sa.select(
            e.c.id,
            e.c.kind,
            e.c.url,
            e.c.secret,
            e.c.previous_secret,
            e.c.previous_secret_expires_at,
            e.c.enabled,
            e.c.deleted_at,
            e.c.rate_limit,
            e.c.rate_tat,
            e.c.max_concurrency,
        )
        .where(e.c.id.in_(endpoint_ids))
        .order_by(e.c.id)
    )
    if postgres:
        # FOR NO KEY UPDATE, not FOR UPDATE: inserting delivery rows (the fan-out of
        # every task event) takes FOR KEY SHARE on their endpoints through the foreign
        # key, in no particular order; FOR UPDATE conflicts with that and the two
        # transactions deadlocked under load (bench/load.py on PostgreSQL).
        eq = eq.with_for_update(key_share=True)
    eps = {r.id: r for r in conn.execute(eq)}
    busy = dict(
        conn.execute(
            sa.select(d.c.endpoint_id, sa.func.count())
            .where(d.c.endpoint_id.in_(endpoint_ids), d.c.lease_expires_at > now, d.c.status == "pending")
            .group_by(d.c.endpoint_id)
        ).all()
    )
    groups: dict[str, list[Any]] = {}
    for r in rows:
        groups.setdefault(r.endpoint_id, []).append(r)

    take: list[Any] = []
    closed: list[str] = []
    held: list[dict[str, Any]] = []
    for endpoint_id, group in groups.items():
        ep = eps[endpoint_id]
        if not ep.enabled or ep.deleted_at is not None:
            closed.extend(r.id for r in group)
            continue
        room = max(0, int(ep.max_concurrency) - int(busy.get(endpoint_id, 0)))
        n = min(len(group), room)
        granted = n
        if ep.rate_limit and n > 0:
            grant = policy.rate_take(ep.rate_tat, now, float(ep.rate_limit), n)
            granted = grant.granted
            conn.execute(e.update().where(e.c.id == endpoint_id).values(rate_tat=grant.tat))
            held.extend(
                {"b_id": r.id, "b_next": at} for r, at in zip(group[granted:n], grant.held_until, strict=True)
            )
        if room == 0:  # saturated since the window was read (another worker): step aside
            held.extend({"b_id": r.id, "b_next": now + HOLD_SECONDS} for r in group)
        take.extend(group[:granted])

    if closed:
        conn.execute(
            d.update()
            .where(d.c.id.in_(closed), d.c.status == "pending")
            .values(status="failed", next_attempt_at=None, last_error="endpoint disabled", updated_at=now)
        )
    if held:
        conn.execute(
            d.update().where(d.c.id == sa.bindparam("b_id")).values(next_attempt_at=sa.bindparam("b_next")),
            held,
        )
    if not take:
        return []
    conn.execute(
        d.update()
        .where(d.c.id.in_([r.id for r in take]))
        .values(lease_owner=owner, lease_expires_at=now + lease_seconds, fence=d.c.fence + 1)
    )
    bodies = dict(
        conn.execute(
            sa.select(m.events.c.id, m.events.c.body).where(m.events.c.id.in_({r.event_id for r in take}))
        ).all()
    )
    out = []
    for r in take:
        ep = eps[r.endpoint_id]
        out.append(
            Claimed(
                id=r.id,
                fence=r.fence + 1,
                attempts=r.attempts,
                manual=bool(r.manual),
                endpoint_id=r.endpoint_id,
                kind=ep.kind,
                url=ep.url,
                secrets=_signing_secrets(ep, now),
                body=bodies[r.event_id].encode(),
            )
        )
    return out


def _last_error(result: Result) -> str | None:
    if result.error:
        return result.error[:500]
    if result.status_code is not None and not 200 <= result.status_code < 300:
        return f"HTTP {result.status_code}"
    return None


def complete(
    conn: Connection,
    results: Sequence[Result],
    *,
    now: float,
    schedule: policy.Schedule,
    disable_after: float,
    rand: Callable[[], float],
) -> int:
    """Record a round of attempts: one ``attempts`` row each, the delivery's new state
    and next attempt time, and the endpoints' health. Returns how many applied (a
    result whose fence is stale — the lease was lost — is dropped).

    The rows still under our fences are found (and on PostgreSQL locked) with one
    SELECT, then updated with one executemany statement — still conditional on the
    fence — and the attempt rows inserted with another.
    """
    if not results:
        return 0
    by_id = {res.claimed.id: res for res in results}
    owned_q = sa.select(d.c.id, d.c.fence).where(d.c.id.in_(sorted(by_id)))
    if conn.dialect.name == "postgresql":
        owned_q = owned_q.with_for_update()
    owned = {row.id for row in conn.execute(owned_q) if row.fence == by_id[row.id].claimed.fence}
    updates: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    succeeded: set[str] = set()
    failed: set[str] = set()
    gone: dict[str, str] = {}
    for res in results:
        c = res.claimed
        if c.id not in owned:
            continue
        outcome = policy.classify(res.status_code, res.error_class)
        made = c.attempts + 1
        next_at: float | None = None
        if outcome not in (policy.SUCCESS, policy.GONE):
            delay = schedule.next_delay(
                made, outcome, retry_after=policy.parse_retry_after(res.retry_after, now), rand=rand()
            )
            next_at = None if delay is None else now + delay
        status = (
            "succeeded" if outcome == policy.SUCCESS else ("pending" if next_at is not None else "failed")
        )
        updates.append(
            {
                "b_id": c.id,
                "b_fence": c.fence,
                "b_status": status,
                "b_attempts": made,
                "b_next": next_at,
                "b_code": res.status_code,
                "b_error": _last_error(res),
                "b_succeeded_at": now if status == "succeeded" else None,
            }
        )
        attempt_rows.append(
            {
                "id": ids.prefixed("att"),
                "delivery_id": c.id,
                "number": made,
                "trigger": "manual" if c.manual else "scheduled",
                "started_at": res.started_at,
                "status_code": res.status_code,
                "latency_ms": res.latency_ms,
                "error_class": res.error_class,
                "response_body": None if res.response_body is None else res.response_body[:EXCERPT_CHARS],
                "next_attempt_at": next_at,
            }
        )
        if outcome == policy.SUCCESS:
            succeeded.add(c.endpoint_id)
        else:
            failed.add(c.endpoint_id)
            if outcome == policy.GONE:
                gone[c.endpoint_id] = c.kind
    if not updates:
        return 0
    conn.execute(
        d.update()
        .where(d.c.id == sa.bindparam("b_id"), d.c.fence == sa.bindparam("b_fence"))
        .values(
            status=sa.bindparam("b_status"),
            attempts=sa.bindparam("b_attempts"),
            next_attempt_at=sa.bindparam("b_next"),
            last_status_code=sa.bindparam("b_code"),
            last_error=sa.bindparam("b_error"),
            lease_owner=None,
            lease_expires_at=None,
            manual=False,
            updated_at=now,
            succeeded_at=sa.bindparam("b_succeeded_at"),
        ),
        updates,
    )
    conn.execute(m.attempts.insert(), attempt_rows)
    _record_health(conn, succeeded, failed - succeeded, now=now, disable_after=disable_after)
    for endpoint_id in sorted(gone):
        endpoints.handle_gone(conn, endpoint_id, gone[endpoint_id], now=now)
    return len(attempt_rows)


def _record_health(
    conn: Connection, succeeded: set[str], failing: set[str], *, now: float, disable_after: float
) -> None:
    """Any success resets an endpoint's failure clock; an endpoint failing without a
    success for ``disable_after`` is disabled, with the reason recorded."""
    touched = sorted(succeeded | failing)
    if touched and conn.dialect.name == "postgresql":
        # lock in id order, as claim() does: an UPDATE ... IN (...) locks in scan order,
        # and two transactions locking the same endpoints in different orders deadlock
        conn.execute(
            sa.select(e.c.id).where(e.c.id.in_(touched)).order_by(e.c.id).with_for_update(key_share=True)
        )
    if succeeded:
        conn.execute(
            e.update().where(e.c.id.in_(sorted(succeeded))).values(last_success_at=now, failing_since=None)
        )
    if not failing:
        return
    conn.execute(
        e.update().where(e.c.id.in_(sorted(failing)), e.c.failing_since.is_(None)).values(failing_since=now)
    )
    rows = conn.execute(
        sa.select(e.c.id, e.c.kind, e.c.failing_since).where(
            e.c.id.in_(sorted(failing)), e.c.enabled.is_(True), e.c.kind != "reply"
        )
    ).all()
    for row in rows:
        if policy.should_disable(row.failing_since, now, disable_after):
            days = disable_after / 86400
            endpoints.disable(
                conn,
                row.id,
                reason=f"no successful delivery for {days:g} days",
                now=now,
            )


def release(conn: Connection, claims: Iterable[Claimed]) -> int:
    """Give back leases at once (graceful shutdown) so another worker need not wait for
    them to expire. Only rows still under our fence are touched."""
    released = 0
    for c in claims:
        released += conn.execute(
            d.update()
            .where(d.c.id == c.id, d.c.fence == c.fence, d.c.status == "pending")
            .values(lease_owner=None, lease_expires_at=None)
        ).rowcount
    return released
