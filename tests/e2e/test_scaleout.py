"""Scale-out: several ``callboard worker`` processes on one PostgreSQL database.

Every task is processed exactly once (one ``task.running`` and one terminal event each),
and a worker killed with SIGKILL in the middle of a render loses nothing: its lease
runs out and another worker renders the task again from scratch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import sqlalchemy as sa

from service import models as m
from service import runtime
from tests.integration import runner_support as rs
from tests.support import MEDIA, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not (MEDIA / "character_photo.jpg").exists(), reason="shared media missing"),
]


def _spawn_worker(settings: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CALLBOARD_DATABASE_URL": settings.database_url,
        "CALLBOARD_DATA_DIR": str(settings.data_dir),
        "CALLBOARD_SECRET_KEY": settings.secret_key,
        "CALLBOARD_PUBLIC_URL": settings.public_url,
        "CALLBOARD_PROVIDER": "local",
        "CALLBOARD_WORKER_LEASE_SECONDS": "4",
        "CALLBOARD_WORKER_POLL_INTERVAL": "0.2",
        "CALLBOARD_WORKER_GRACE_SECONDS": "2",
        "CALLBOARD_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_process_each_task_once_and_survive_a_sigkill(
    settings, db, make_account, tmp_path_factory
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("scale-out runs on PostgreSQL (set CALLBOARD_TEST_POSTGRES_URL)")
    rt = runtime.build(settings)
    account, _ = make_account(max_jobs=10)
    reference = rs.short_reference(tmp_path_factory.getbasetemp() / "runner-clips")

    async def create_all() -> list[str]:
        body = rs.body(MEDIA / "character_photo.jpg", reference, ratio="960:960")
        return [await rs.create(db, rt, account, body) for _ in range(4)]

    ids = asyncio.run(create_all())
    workers = [_spawn_worker(settings) for _ in range(2)]
    try:
        victim = workers[0]

        def victim_rendering() -> Any:
            rows = db.read_sync(
                lambda conn: conn.execute(
                    sa.select(m.tasks.c.id, m.tasks.c.lease_owner).where(m.tasks.c.status == "RUNNING")
                ).all()
            )
            return next((r.id for r in rows if r.lease_owner and f":{victim.pid}:" in r.lease_owner), None)

        killed_task = _wait(victim_rendering, 60, "the first worker to start a render")
        time.sleep(1.0)  # well into the render
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        def all_done() -> bool:
            return all(rs.task(db, tid).status in ("SUCCEEDED", "FAILED", "CANCELLED") for tid in ids)

        _wait(all_done, 240, "every task to finish")
        survivor = workers[1]
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=30) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    for tid in ids:
        row = rs.task(db, tid)
        assert row.status == "SUCCEEDED", (tid, row.failure_code, row.failure)
        types = rs.event_types(db, tid)
        assert types.count("task.running") == 1 and types.count("task.succeeded") == 1, types
        assert len(row.output_keys) == 1
    assert rs.task(db, killed_task).fence >= 2, "the killed worker's task was claimed again"
