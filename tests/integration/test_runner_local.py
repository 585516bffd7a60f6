"""The local engine as a provider: real renders in child processes, driven by the runner."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest

from service import runner, tasks
from service.providers import local
from tests.integration import runner_support as rs
from tests.support import MEDIA

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (MEDIA / "character_photo.jpg").exists(), reason="shared media missing")


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return rs.short_reference(tmp_path_factory.getbasetemp() / "runner-clips")


def _runner(db: Any, rt: Any) -> runner.TaskRunner:
    return runner.TaskRunner.build(db, rt, ident="test-worker")


def test_local_render_succeeds_with_progress_and_one_event_per_transition(
    db, rt, make_account, reference
) -> None:
    account, _ = make_account()
    job = _runner(db, rt)

    async def go() -> str:
        task_id = await rs.create(
            db, rt, account, rs.body(MEDIA / "character_photo.jpg", reference, ratio="960:960")
        )
        await _drain(job)
        await job.aclose()
        return task_id

    task_id = asyncio.run(go())
    row = rs.task(db, task_id)
    assert row.status == "SUCCEEDED", (row.failure_code, row.failure)
    assert row.provider == "local" and row.provider_task_id == task_id
    assert row.output_keys and row.output_keys[0].endswith(".mp4")
    assert row.progress == 1.0 and row.lease_owner is None and row.run_at is None
    types = rs.event_types(db, task_id)
    assert types[:2] == ["task.created", "task.running"]
    assert types[-1] == "task.succeeded"
    assert types.count("task.running") == 1 and types.count("task.succeeded") == 1
    assert set(types[2:-1]) <= {"task.progress"}


def test_dog_character_fails_cleanly_with_asset_invalid(db, rt, make_account, reference) -> None:
    account, _ = make_account()
    job = _runner(db, rt)

    async def go() -> str:
        task_id = await rs.create(db, rt, account, rs.body(MEDIA / "character_dog.jpg", reference))
        await _drain(job)
        await job.aclose()
        return task_id

    row = rs.task(db, asyncio.run(go()))
    assert row.status == "FAILED"
    assert row.failure_code == "ASSET.INVALID"
    assert row.failure and "face" in row.failure.lower()


def test_delete_stops_a_render_in_progress(db, rt, make_account, reference) -> None:
    account, _ = make_account()
    job = _runner(db, rt)

    async def go() -> str:
        task_id = await rs.create(db, rt, account, rs.body(MEDIA / "character_photo.jpg", reference))
        await job.run_once()  # claims it and starts the render
        assert rs.task(db, task_id).status == "RUNNING"
        for _ in range(300):  # wait until the child process is rendering
            if job.renders is not None and job.renders.engine.running:
                break
            await asyncio.sleep(0.05)
        await db.write(lambda conn: tasks.cancel_or_delete(conn, rt, account["id"], task_id))
        await _drain(job)
        await job.aclose()
        return task_id

    task_id = asyncio.run(go())
    row = rs.task(db, task_id)
    assert row.status == "CANCELLED"
    assert row.output_keys is None
    assert row.cancel_pending is False
    assert rs.event_types(db, task_id).count("task.cancelled") == 1


def test_a_warm_spare_process_takes_the_next_render_and_is_replaced(db, rt, make_account, reference) -> None:
    account, _ = make_account()
    job = _runner(db, rt)
    assert job.renders is not None
    engine = job.renders.engine
    assert engine.prewarm  # CALLBOARD_LOCAL_PREWARM defaults to on

    async def go() -> tuple[str, int, list[Any]]:
        assert not await job.run_once()  # nothing to do, but the free slot gets a spare
        assert engine.spares == 1
        spare = engine._spares[0]
        assert await asyncio.to_thread(spare.conn.poll, 60), "the spare never finished loading the engine"
        assert spare.conn.recv() == ("ready",)
        task_id = await rs.create(
            db, rt, account, rs.body(MEDIA / "character_photo.jpg", reference, ratio="960:960")
        )
        await _drain(job)
        replacements = list(engine._spares)
        await job.aclose()
        return task_id, spare.proc.pid, replacements

    task_id, used_pid, replacements = asyncio.run(go())
    assert rs.task(db, task_id).status == "SUCCEEDED"
    # The warm process rendered the job and exited; a fresh spare took its place, and
    # closing the worker stopped that one.
    assert len(replacements) == 1 and replacements[0].proc.pid != used_pid
    assert not replacements[0].proc.is_alive()


def test_spares_stop_on_their_own_when_the_worker_dies(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, sys\n"
        "from service.providers import local\n"
        "engine = local.LocalEngine(1, prewarm=True)\n"
        "engine.refill()\n"
        "print(engine._spares[0].proc.pid, flush=True)\n"
        "engine._spares[0].conn.poll(60)\n"
        "os._exit(0)  # like a SIGKILL: no clean-up runs\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=True
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10 * local.SPARE_CHECK_EVERY
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "an orphaned spare render process kept running"


def test_without_prewarm_no_spare_is_started() -> None:
    engine = local.LocalEngine(2, prewarm=False)
    engine.refill()
    assert engine.spares == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _drain(job: runner.TaskRunner, rounds: int = 3000) -> None:
    for _ in range(rounds):
        if not await job.run_once():
            return
    raise AssertionError("the runner never went idle")
