"""The runner with a remote provider (Runway's API mocked with respx), on every database:
dispatch, polling, throttling and fairness, cancellation, failures, timeouts, races."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
import sqlalchemy as sa

from service import models as m
from service import runner, runtime, tasks
from service.providers import runway
from tests.integration import runner_support as rs

BASE = "https://upstream.example.com"
_TLS = ssl.create_default_context()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def remote_rt(settings, clock) -> runtime.Runtime:
    return runtime.build(settings.replace(rehost_outputs=False, provider_max_retries=3), clock)


class Upstream:
    """A scripted Runway: ``status[id]`` is what GET /v1/tasks/{id} answers."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.ids = (f"up-{n}" for n in itertools.count(1))
        self.created: list[str] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.create = router.post("/v1/character_performance").mock(side_effect=self._create)
        self.get = router.get(url__regex=r"/v1/tasks/(?P<tid>[^/]+)$").mock(side_effect=self._get)
        self.delete = router.delete(url__regex=r"/v1/tasks/(?P<tid>[^/]+)$").respond(204)
        router.get("/v1/organization").respond(404, json={"error": "not here"})

    def _create(self, request: httpx.Request) -> httpx.Response:
        tid = next(self.ids)
        self.created.append(tid)
        self.status[tid] = {"status": "PENDING"}
        return httpx.Response(200, json={"id": tid})

    def _get(self, request: httpx.Request, tid: str) -> httpx.Response:
        if tid not in self.status:
            return httpx.Response(404, json={"error": "Task not found"})
        return httpx.Response(
            200, json={"id": tid, "createdAt": "2026-01-01T00:00:00.000Z", **self.status[tid]}
        )


def make_runner(db, rt, clock, ident: str = "w1", max_concurrency: int = 0) -> runner.TaskRunner:
    provider = runway.RunwayProvider(
        httpx.AsyncClient(verify=_TLS),
        base_url=BASE,
        api_key="rk",
        clock=clock,
        max_concurrency=max_concurrency,
    )
    return runner.TaskRunner(
        db, rt, ident=ident, provider=provider, http=httpx.AsyncClient(verify=_TLS), rand=lambda: 0.0
    )


async def drain(job: runner.TaskRunner) -> None:
    for _ in range(1000):
        if not await job.run_once():
            return
    raise AssertionError("never idle")


def statuses(db, ids: list[str]) -> list[str]:
    return [rs.task(db, tid).status for tid in ids]


def test_task_runs_through_the_provider_with_one_event_per_transition(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body(replyRef="r1"))
        await drain(job)
        row = rs.task(db, tid)
        assert row.status == "PENDING" and row.provider == "runway" and row.provider_task_id == "up-1"
        assert row.run_at == pytest.approx(clock.now() + 5.0)
        clock.advance(2)
        await drain(job)  # not due yet: no poll
        assert up.get.call_count == 0
        clock.advance(3)
        up.status["up-1"] = {"status": "RUNNING", "progress": 0.3}
        await drain(job)
        row = rs.task(db, tid)
        assert row.status == "RUNNING" and row.progress == 0.3
        clock.advance(5)
        up.status["up-1"] = {"status": "RUNNING", "progress": 0.6}
        await drain(job)
        assert rs.task(db, tid).progress == 0.6
        clock.advance(5)
        up.status["up-1"] = {
            "status": "SUCCEEDED",
            "output": ["https://cdn.example.com/o.mp4"],
            "cost": {"credits": 40},
        }
        await drain(job)
        clock.advance(60)
        await drain(job)
        await job.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert row.status == "SUCCEEDED" and row.upstream_output == ["https://cdn.example.com/o.mp4"]
    assert row.cost_credits == 40 and row.run_at is None and row.lease_owner is None
    assert up.get.call_count == 3  # nothing polled after the end
    assert rs.event_types(db, tid) == ["task.created", "task.running", "task.progress", "task.succeeded"]
    sent = up.create.calls.last.request
    assert sent.headers["x-runway-version"] == "2024-11-06" and sent.headers["authorization"] == "Bearer rk"


def test_rehosted_outputs_are_served_by_callboard(db, settings, clock, make_account, router) -> None:
    rt = runtime.build(settings.replace(rehost_outputs=True), clock)
    up = Upstream(router)
    router.get("https://cdn.example.com/o.mp4").respond(
        200, content=b"\x00\x00\x00\x18ftypmp42", headers={"Content-Type": "video/mp4"}
    )
    account, _ = make_account()
    job = make_runner(db, rt, clock)

    async def go() -> str:
        tid = await rs.create(db, rt, account, rs.remote_body())
        await drain(job)
        up.status["up-1"] = {"status": "SUCCEEDED", "output": ["https://cdn.example.com/o.mp4"]}
        clock.advance(5)
        await drain(job)
        await job.aclose()
        return tid

    row = rs.task(db, asyncio.run(go()))
    assert row.status == "SUCCEEDED"
    assert row.output_keys and row.upstream_output == ["https://cdn.example.com/o.mp4"]


def test_upstream_failure_keeps_failure_and_code(db, remote_rt, clock, make_account, router) -> None:
    up = Upstream(router)
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        await drain(job)
        up.status["up-1"] = {
            "status": "FAILED",
            "failure": "The image was flagged",
            "failureCode": "SAFETY.INPUT.IMAGE",
        }
        clock.advance(5)
        await drain(job)
        await job.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert (row.status, row.failure, row.failure_code) == (
        "FAILED",
        "The image was flagged",
        "SAFETY.INPUT.IMAGE",
    )
    assert rs.event_types(db, tid) == ["task.created", "task.failed"]


def test_account_max_jobs_throttles_and_starts_fifo_as_slots_free(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    account, _ = make_account(max_jobs=2)
    job = make_runner(db, remote_rt, clock)

    async def go() -> list[str]:
        ids = []
        for _ in range(4):
            ids.append(await rs.create(db, remote_rt, account, rs.remote_body()))
            clock.advance(0.01)
        await drain(job)
        assert statuses(db, ids) == ["PENDING", "PENDING", "THROTTLED", "THROTTLED"]
        assert len(up.created) == 2
        up.status["up-1"] = {"status": "SUCCEEDED", "output": []}
        clock.advance(5)
        await drain(job)
        assert statuses(db, ids) == ["SUCCEEDED", "PENDING", "PENDING", "THROTTLED"]
        assert rs.task(db, ids[2]).provider_task_id == "up-3"  # the oldest waiting went first
        await job.aclose()
        return ids

    asyncio.run(go())


def test_accounts_share_provider_slots_fairly(db, remote_rt, clock, make_account, router) -> None:
    Upstream(router)
    busy, _ = make_account("busy", max_jobs=10)
    quiet, _ = make_account("quiet", max_jobs=10)
    job = make_runner(db, remote_rt, clock, max_concurrency=2)

    async def go() -> None:
        busy_ids = [await rs.create(db, remote_rt, busy, rs.remote_body()) for _ in range(5)]
        clock.advance(1)
        quiet_id = await rs.create(db, remote_rt, quiet, rs.remote_body())
        await drain(job)
        assert rs.task(db, quiet_id).provider_task_id is not None
        assert sum(rs.task(db, tid).provider_task_id is not None for tid in busy_ids) == 1
        assert statuses(db, busy_ids).count("THROTTLED") == 4
        await job.aclose()

    asyncio.run(go())


def test_create_answered_429_waits_throttled_then_starts(db, remote_rt, clock, make_account, router) -> None:
    up = Upstream(router)
    up.create.side_effect = [
        httpx.Response(429, headers={"Retry-After": "20"}, json={"error": "daily limit"}),
        up._create,
    ]
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        await drain(job)
        row = rs.task(db, tid)
        assert row.status == "THROTTLED" and row.provider_task_id is None and row.started_at is None
        assert row.run_at == pytest.approx(clock.now() + 20)
        clock.advance(20)
        await drain(job)
        await job.aclose()
        return tid

    row = rs.task(db, asyncio.run(go()))
    assert row.status == "PENDING" and row.provider_task_id == "up-1"


def test_transient_submit_errors_retry_with_backoff_then_fail_internal(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    up.create.side_effect = None
    up.create.return_value = httpx.Response(503, json={"error": "maintenance"})
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        for _ in range(10):
            await drain(job)
            clock.advance(400)
        await job.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert up.create.call_count == 4  # the first try and 3 retries (CALLBOARD_PROVIDER_MAX_RETRIES)
    assert row.status == "FAILED" and row.failure_code == "INTERNAL" and "maintenance" in row.failure


def test_rejected_input_fails_with_asset_invalid(db, remote_rt, clock, make_account, router) -> None:
    up = Upstream(router)
    up.create.side_effect = None
    up.create.return_value = httpx.Response(400, json={"error": "reference.uri: video is too short"})
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        await drain(job)
        await job.aclose()
        return tid

    row = rs.task(db, asyncio.run(go()))
    assert row.status == "FAILED" and row.failure_code == "ASSET.INVALID" and "too short" in row.failure


def test_delete_cancels_at_once_and_upstream_in_the_background_with_retries(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    up.delete.side_effect = [httpx.Response(503), httpx.Response(204)]
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        await drain(job)
        await db.write(lambda conn: tasks.cancel_or_delete(conn, remote_rt, account["id"], tid))
        assert rs.task(db, tid).status == "CANCELLED"
        await drain(job)
        assert up.delete.call_count == 1 and rs.task(db, tid).cancel_pending is True
        clock.advance(10)
        await drain(job)
        clock.advance(10)
        await drain(job)
        await job.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert up.delete.call_count == 2 and str(up.delete.calls.last.request.url).endswith("/v1/tasks/up-1")
    assert row.status == "CANCELLED" and row.cancel_pending is False and row.run_at is None
    assert up.get.call_count == 0
    assert rs.event_types(db, tid) == ["task.created", "task.cancelled"]


def test_stuck_upstream_task_times_out_as_internal_and_is_cancelled(
    db, settings, clock, make_account, router
) -> None:
    rt = runtime.build(settings.replace(rehost_outputs=False, task_timeout=60.0), clock)
    up = Upstream(router)
    account, _ = make_account()
    job = make_runner(db, rt, clock)

    async def go() -> str:
        tid = await rs.create(db, rt, account, rs.remote_body())
        await drain(job)
        up.status["up-1"] = {"status": "RUNNING", "progress": 0.1}
        for _ in range(14):
            clock.advance(5)
            await drain(job)
        await job.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert row.status == "FAILED" and row.failure_code == "INTERNAL" and "60 seconds" in row.failure
    assert up.delete.call_count == 1 and row.cancel_pending is False


def test_unknown_upstream_task_fails_instead_of_polling_forever(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    account, _ = make_account()
    job = make_runner(db, remote_rt, clock)

    async def go() -> str:
        tid = await rs.create(db, remote_rt, account, rs.remote_body())
        await drain(job)
        del up.status["up-1"]
        clock.advance(5)
        await drain(job)
        await job.aclose()
        return tid

    row = rs.task(db, asyncio.run(go()))
    assert row.status == "FAILED" and row.failure_code == "INTERNAL"


def test_two_runners_racing_poll_each_task_once_and_emit_one_event(
    db, remote_rt, clock, make_account, router
) -> None:
    up = Upstream(router)
    account, _ = make_account(max_jobs=50)
    first, second = make_runner(db, remote_rt, clock, "w1"), make_runner(db, remote_rt, clock, "w2")

    async def go() -> list[str]:
        ids = [await rs.create(db, remote_rt, account, rs.remote_body()) for _ in range(20)]
        await asyncio.gather(drain(first), drain(second))
        assert len(up.created) == 20
        for tid in up.created:
            up.status[tid] = {"status": "SUCCEEDED", "output": []}
        clock.advance(5)
        await asyncio.gather(drain(first), drain(second))
        await first.aclose()
        await second.aclose()
        return ids

    ids = asyncio.run(go())
    assert up.get.call_count == 20
    assert statuses(db, ids) == ["SUCCEEDED"] * 20
    count = db.read_sync(
        lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(m.events).where(m.events.c.type == "task.succeeded")
        ).scalar_one()
    )
    assert count == 20
