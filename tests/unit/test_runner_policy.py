"""The runner's pure policies as tables: fair shares, backoff, poll outcomes."""

from __future__ import annotations

import pytest

from service.providers import base, policy

NOW = 1_000.0


@pytest.mark.parametrize(
    ("waiting", "in_use", "global_free", "limit", "grants", "throttle", "throttle_all"),
    [
        # one account under its cap takes what it needs
        ([("a", 3, 5)], {}, None, 50, {"a": 3}, [], False),
        # an account at its cap gets nothing and is throttled
        ([("a", 3, 2)], {"a": 2}, None, 50, {}, ["a"], False),
        # partly free: fills the cap, the rest throttled
        ([("a", 4, 2)], {"a": 1}, None, 50, {"a": 1}, ["a"], False),
        # provider slots are dealt in turns, oldest-waiting account first
        ([("a", 10, 10), ("b", 10, 10)], {}, 3, 50, {"a": 2, "b": 1}, [], True),
        # a busy account cannot starve a quiet one
        ([("big", 100, 100), ("small", 1, 5)], {}, 2, 50, {"big": 1, "small": 1}, [], True),
        # provider full: nobody starts, everyone waits as THROTTLED
        ([("a", 1, 5), ("b", 1, 5)], {}, 0, 50, {}, [], True),
        # the batch limit bounds a round without throttling anyone
        ([("a", 10, 10), ("b", 10, 10)], {}, None, 4, {"a": 2, "b": 2}, [], False),
        # provider has room for exactly what waits: not full afterwards? it is: 0 left
        ([("a", 2, 5)], {}, 2, 50, {"a": 2}, [], False),
        # negative free (capacity lowered below use) counts as full
        ([("a", 1, 5)], {}, -3, 50, {}, [], True),
    ],
)
def test_plan_dispatch_shares_slots_fairly(
    waiting, in_use, global_free, limit, grants, throttle, throttle_all
) -> None:
    assert policy.plan_dispatch(waiting, in_use, global_free, limit) == (grants, throttle, throttle_all)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "rand", "expected"),
    [
        (1, None, 0.0, 1.0),  # 2 s base, equal jitter: between 1 and 2
        (1, None, 1.0, 2.0),
        (2, None, 0.5, 3.0),
        (4, None, 0.0, 8.0),
        (20, None, 1.0, 300.0),  # capped
        (1, 30.0, 0.0, 30.0),  # Retry-After wins when longer
        (4, 1.0, 1.0, 16.0),  # ...and never shortens the backoff
        (1, 10_000.0, 0.0, 3600.0),  # an absurd Retry-After is capped at an hour
    ],
)
def test_backoff_is_exponential_with_jitter_and_honours_retry_after(
    attempt, retry_after, rand, expected
) -> None:
    assert policy.backoff(attempt, retry_after=retry_after, rand=lambda: rand) == pytest.approx(expected)


def S(status: str, **kw: object) -> base.Status:  # noqa: N802 - a table helper
    return base.Status(status=status, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "progress", "last_event", "seen", "values", "event"),
    [
        ("PENDING", None, None, S("PENDING"), None, None),
        ("PENDING", None, None, S("THROTTLED"), {"status": "THROTTLED"}, None),
        ("THROTTLED", None, None, S("PENDING"), {"status": "PENDING"}, None),
        (
            "PENDING",
            None,
            None,
            S("RUNNING", progress=0.2),
            {"status": "RUNNING", "progress": 0.2},
            "task.running",
        ),
        ("THROTTLED", None, None, S("RUNNING"), {"status": "RUNNING", "progress": 0.0}, "task.running"),
        ("RUNNING", 0.2, None, S("RUNNING", progress=0.2), None, None),
        ("RUNNING", 0.2, None, S("RUNNING"), None, None),
        (
            "RUNNING",
            0.2,
            NOW - 5,
            S("RUNNING", progress=0.5),
            {"progress": 0.5, "last_progress_event_at": NOW},
            "task.progress",
        ),
        ("RUNNING", 0.2, NOW - 0.5, S("RUNNING", progress=0.5), {"progress": 0.5}, None),
        ("RUNNING", 0.5, None, S("PENDING"), None, None),  # never backwards
    ],
)
def test_poll_change_for_active_statuses(current, progress, last_event, seen, values, event) -> None:
    change = policy.poll_change(current, progress, last_event, seen, NOW, 25.0)
    if values is None:
        assert change is None
    else:
        assert change is not None and change.values == values and change.event == event


@pytest.mark.parametrize(
    ("seen", "status", "event", "extra"),
    [
        (
            S("SUCCEEDED", output=("https://cdn/x.mp4",), cost_credits=40),
            "SUCCEEDED",
            "task.succeeded",
            {"upstream_output": ["https://cdn/x.mp4"], "cost_credits": 40, "progress": 1.0},
        ),
        (S("SUCCEEDED", output=("https://cdn/x.mp4",)), "SUCCEEDED", "task.succeeded", {"cost_credits": 25}),
        (
            S("FAILED", failure="Face not found", failure_code="SAFETY.INPUT.FACE"),
            "FAILED",
            "task.failed",
            {"failure": "Face not found", "failure_code": "SAFETY.INPUT.FACE", "cost_credits": 0},
        ),
        (S("FAILED"), "FAILED", "task.failed", {"failure_code": None}),
        (S("CANCELLED"), "CANCELLED", "task.cancelled", {"cost_credits": 0}),
    ],
)
def test_poll_change_for_terminal_statuses_keeps_failure_and_output(seen, status, event, extra) -> None:
    change = policy.poll_change("RUNNING", 0.4, None, seen, NOW, 25.0)
    assert change is not None and change.terminal and change.event == event
    assert change.values["status"] == status
    assert change.values["finished_at"] == NOW and change.values["run_at"] is None
    for key, value in extra.items():
        assert change.values[key] == value
    if status == "FAILED":
        assert change.values["failure"]


@pytest.mark.parametrize(
    ("started_at", "now", "limit", "expected"),
    [(None, 100.0, 10.0, False), (0.0, 10.0, 10.0, False), (0.0, 10.5, 10.0, True)],
)
def test_timed_out(started_at, now, limit, expected) -> None:
    assert policy.timed_out(started_at, now, limit) is expected
