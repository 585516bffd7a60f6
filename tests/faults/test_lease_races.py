"""A worker that outlives its lease mid-submit must not take the task back.

Found by the kill rounds: worker 1's submit hangs past its lease, worker 2 claims the
task again and submits it; when worker 1's answer finally comes, its write is fenced
out — but it then recorded its own upstream job as an orphan to cancel *on worker 2's
fence*, so the cancel job cancelled the job the task now pointed at and cleared
``run_at``: the task stayed PENDING for ever, never polled. Deterministic here, with a
fake clock and a provider whose first submit waits for the test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service import runner, runtime
from service.providers import base
from tests.integration import runner_support as rs


class SlowFirstSubmit:
    """A provider whose first submit waits for ``gate``; every task succeeds on poll."""

    name = "runway"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.submitted: list[str] = []
        self.cancelled: list[str] = []

    async def submit(self, job: base.Job) -> str:
        task_id = f"up-{len(self.submitted) + 1}"
        self.submitted.append(task_id)
        if task_id == "up-1":
            await self.gate.wait()
        return task_id

    async def poll(self, provider_task_id: str, *, age: float) -> base.Status:
        if provider_task_id in self.cancelled:
            return base.Status(status="CANCELLED")
        return base.Status(
            status="SUCCEEDED", progress=1.0, output=(f"https://cdn.example.com/{provider_task_id}.mp4",)
        )

    async def cancel(self, provider_task_id: str) -> None:
        self.cancelled.append(provider_task_id)

    async def capacity(self) -> int | None:
        return None

    async def upload(self, path: Any, filename: str) -> str:  # pragma: no cover - https inputs only
        raise AssertionError("no uploads here")

    async def aclose(self) -> None:
        return None


async def _drain(job: runner.TaskRunner) -> None:
    for _ in range(100):
        if not await job.run_once():
            return


def test_a_submit_answered_after_the_lease_ran_out_leaves_the_new_claim_alone(
    db: Any, settings: Any, clock: Any, make_account: Any
) -> None:
    rt = runtime.build(settings.replace(rehost_outputs=False, worker_lease_seconds=10.0), clock)
    account, _ = make_account(max_jobs=5)
    provider = SlowFirstSubmit()

    async def go() -> str:
        first = runner.TaskRunner(db, rt, ident="w1", provider=provider, rand=lambda: 0.0)
        second = runner.TaskRunner(db, rt, ident="w2", provider=provider, rand=lambda: 0.0)
        tid = await rs.create(db, rt, account, rs.remote_body())
        stuck = asyncio.create_task(first.run_once())
        for _ in range(200):
            if provider.submitted:
                break
            await asyncio.sleep(0.01)
        clock.advance(11)  # worker 1's lease runs out while its submit hangs
        await _drain(second)  # worker 2 claims the task again and submits it
        assert rs.task(db, tid).provider_task_id == "up-2"
        provider.gate.set()  # worker 1's submit is answered at last
        await stuck
        for _ in range(4):
            await _drain(first)
            await _drain(second)
            clock.advance(6)
        await first.aclose()
        await second.aclose()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert row.status == "SUCCEEDED", (row.status, row.provider_task_id, row.run_at, row.cancel_pending)
    assert row.provider_task_id == "up-2"
    assert provider.cancelled == ["up-1"], "worker 1's duplicate upstream job was cancelled, not worker 2's"
    assert rs.event_types(db, tid).count("task.succeeded") == 1
