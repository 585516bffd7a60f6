"""Pure policies for running tasks on providers, tested as tables: fair shares of
provider slots, retry backoff, and what a provider's status means for a task.

Clock and randomness come in as arguments; nothing here touches the database or the
network.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from service.providers import base

WAITING = ("PENDING", "THROTTLED")
PROGRESS_EVENT_EVERY = 1.0  # seconds between task.progress events of one task


def plan_dispatch(
    waiting: list[tuple[str, int, int]], in_use: dict[str, int], global_free: int | None, limit: int
) -> tuple[dict[str, int], list[str], bool]:
    """Share free provider slots among accounts.

    ``waiting`` is ``(account_id, waiting_tasks, max_jobs)`` ordered by each account's
    oldest waiting task. Slots are dealt one per account per turn (round robin), within
    each account's ``max_jobs - in_use``, the provider's ``global_free`` (None:
    unlimited) and ``limit`` per batch. Returns ``(grants, accounts_to_throttle,
    throttle_everyone)``: accounts left at their cap with tasks still waiting, and
    whether the provider itself is full.
    """
    grants = {account: 0 for account, _, _ in waiting}
    room = {account: max(0, cap - in_use.get(account, 0)) for account, _, cap in waiting}
    left = {account: n for account, n, _ in waiting}
    budget = limit if global_free is None else min(limit, max(0, global_free))
    progress = True
    while budget > 0 and progress:
        progress = False
        for account, _, _ in waiting:
            if budget == 0:
                break
            if room[account] > 0 and left[account] > 0:
                grants[account] += 1
                room[account] -= 1
                left[account] -= 1
                budget -= 1
                progress = True
    throttle = [account for account, _, _ in waiting if left[account] > 0 and room[account] == 0]
    provider_full = global_free is not None and global_free - sum(grants.values()) <= 0
    throttle_all = provider_full and any(n > 0 for n in left.values())
    return {a: n for a, n in grants.items() if n > 0}, throttle, throttle_all


def backoff(
    attempt: int,
    *,
    retry_after: float | None = None,
    base_delay: float = 2.0,
    cap: float = 300.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential with equal jitter
    (half fixed, half random), at most ``cap``; never sooner than the provider's
    ``Retry-After`` (itself capped at an hour)."""
    delay = min(cap, base_delay * 2 ** max(0, attempt - 1))
    delay = delay / 2 + rand() * delay / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, 3600.0))
    return delay


@dataclasses.dataclass(frozen=True)
class Change:
    """A task transition decided from a poll: ``values`` to write and the event it causes."""

    values: dict[str, Any]
    event: str | None = None
    terminal: bool = False


def poll_change(
    current: str,
    progress: float | None,
    last_event_at: float | None,
    seen: base.Status,
    now: float,
    estimate: float,
) -> Change | None:
    """What a provider's status means for the task (None: nothing to write).

    Never goes backwards (a RUNNING task seen as PENDING stays RUNNING); THROTTLED is
    passed through; progress changes are written, with a ``task.progress`` event at
    most once per :data:`PROGRESS_EVENT_EVERY`; failure and failureCode are kept.
    """
    done = {"finished_at": now, "run_at": None, "lease_owner": None, "lease_expires_at": None}
    if seen.status in WAITING:
        return Change({"status": seen.status}) if current in WAITING and current != seen.status else None
    if seen.status == "RUNNING":
        value = seen.progress if seen.progress is not None else (progress or 0.0)
        if current != "RUNNING":
            return Change({"status": "RUNNING", "progress": value}, "task.running")
        if seen.progress is None or seen.progress == progress:
            return None
        if last_event_at is None or now - last_event_at >= PROGRESS_EVENT_EVERY:
            return Change({"progress": value, "last_progress_event_at": now}, "task.progress")
        return Change({"progress": value})
    if seen.status == "SUCCEEDED":
        cost = seen.cost_credits if seen.cost_credits is not None else int(round(estimate))
        values = {
            "status": "SUCCEEDED",
            "progress": 1.0,
            "upstream_output": list(seen.output),
            "cost_credits": cost,
        }
        return Change({**values, **done}, "task.succeeded", terminal=True)
    if seen.status == "FAILED":
        values = {
            "status": "FAILED",
            "failure": seen.failure or "The provider reported a failure without giving a reason.",
            "failure_code": seen.failure_code,
            "cost_credits": seen.cost_credits or 0,
        }
        return Change({**values, **done}, "task.failed", terminal=True)
    return Change(
        {"status": "CANCELLED", "cost_credits": seen.cost_credits or 0, **done}, "task.cancelled", True
    )


def failed(code: str, message: str, now: float, **extra: Any) -> Change:
    values = {
        "status": "FAILED",
        "failure": message[:2000],
        "failure_code": code,
        "cost_credits": 0,
        "finished_at": now,
        "run_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        **extra,
    }
    return Change(values, "task.failed", terminal=True)


def timed_out(started_at: float | None, now: float, limit: float) -> bool:
    return started_at is not None and now - started_at > limit
