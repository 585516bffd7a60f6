"""Workers SIGKILLed mid-render (the local engine) lose nothing.

Renders are CPU-heavy on this machine kind, so this runs only in the full proof
(``CALLBOARD_PROOF=full``): a few rounds, each killing the rendering worker once the
task shows render progress; a new worker renders it again from scratch once the lease
runs out, and every webhook still arrives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from service import models as m
from tests.faults import cluster as cl
from tests.faults import fakes as fakes_mod
from tests.faults.conftest import FULL
from tests.integration import runner_support as rs
from tests.support import MEDIA

pytestmark = [
    pytest.mark.timeout_sensitive,
    pytest.mark.skipif(not FULL, reason="renders are slow: CALLBOARD_PROOF=full (scripts/proof)"),
    pytest.mark.skipif(not (MEDIA / "character_photo.jpg").exists(), reason="shared media missing"),
]
RESULTS = Path("/tmp/callboard-proof")


def test_workers_killed_mid_render_lose_nothing(backend_url: str | None, tmp_path: Path) -> None:
    rounds = 3
    reference = rs.short_reference(tmp_path / "clips")
    with (
        fakes_mod.running(receivers=1) as fakes,
        cl.deployment(
            tmp_path, backend_url, fakes, CALLBOARD_PROVIDER="local", CALLBOARD_WORKER_LEASE_SECONDS="3"
        ) as cluster,
    ):
        key = cluster.run_cli("keys", "create", "--account", "render", "--max-jobs", "10")
        cluster.start_web()
        cluster.start_workers(1)
        killed = 0
        for n in range(rounds):
            body = rs.body(MEDIA / "character_photo.jpg", reference, ratio="960:960")
            body.update(replyUrl=f"{fakes.receiver_urls[0]}/reply/{n}", replyRef=f"render-{n}")
            task_id = cl.submit_many(cluster, key, [(f"render-{n}", body)], threads=1)[f"render-{n}"]

            def rendering(task_id: str = task_id) -> bool:
                rows = cluster.rows(
                    sa.select(m.tasks.c.status, m.tasks.c.progress).where(m.tasks.c.id == task_id)
                )
                return bool(rows) and rows[0].status == "RUNNING" and (rows[0].progress or 0) > 0

            cl.wait_for(rendering, "the render to make progress", 180)
            cluster.kill_workers()
            killed += 1
            cluster.start_workers(1)
        cluster.settle(600)
        verdict = cl.check_nothing_lost(cluster, fakes, {})
        fences = [r.fence for r in cluster.rows(sa.select(m.tasks.c.fence))]
        assert all(s == "SUCCEEDED" for s in cluster.statuses().values())
        assert all(f >= 2 for f in fences), "every killed render was claimed again"
    summary = {
        "backend": "postgresql" if backend_url else "sqlite",
        "renders_killed": killed,
        **verdict.__dict__,
    }
    print("render kills:", json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"render-kills-{summary['backend']}.json").write_text(json.dumps(summary, indent=2))
