"""The database stopped and restarted under load: everyone backs off and resumes alone.

A PostgreSQL server of this test's own (``scripts/pg-cluster``) serves a web process and
two workers while tasks flow; the server is stopped (fast shutdown: every connection
is cut) for a while and started again on the same port. No process is restarted by
hand. Meanwhile the API answers 503 (never 500) and ``/readyz`` says not ready; after
the restart every task completes and every webhook arrives, judged like the kill
rounds.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.faults import cluster as cl
from tests.faults import fakes as fakes_mod
from tests.faults.conftest import scale
from tests.support import ROOT, free_port

pytestmark = [
    pytest.mark.timeout_sensitive,
    pytest.mark.skipif(
        not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")), reason="no PostgreSQL server"
    ),
]
PG = str(ROOT / "scripts" / "pg-cluster")


def _pg(*args: str) -> str:
    return subprocess.run([PG, *args], capture_output=True, text=True, timeout=120, check=True).stdout.strip()


def test_workers_and_web_ride_out_a_database_restart(tmp_path: Path) -> None:
    pgdir = Path(f"/tmp/pg-proof-outage-{free_port()}")
    port = free_port()
    url = _pg("start", str(pgdir), str(port))
    outages = scale(1, 3)
    try:
        with fakes_mod.running(receivers=1) as fakes, cl.deployment(tmp_path, url, fakes) as cluster:
            key = cluster.run_cli("keys", "create", "--account", "outage", "--max-jobs", "1000")
            cluster.start_web()
            cluster.start_workers(2)
            submitted: dict[str, str] = {}
            answers: list[int] = []
            for n in range(outages):
                items = [
                    (f"o{n}-{i}", cl.body_for(f"{fakes.receiver_urls[0]}/reply/o{n}-{i}", f"o{n}-{i}"))
                    for i in range(8)
                ]
                submitted.update(cl.submit_many(cluster, key, items[:4]))
                cl.wait_for(
                    lambda n=n: fakes.upstream_calls["create"] >= 4 * (n + 1), "the workers to dispatch", 60
                )  # work in flight: polls and deliveries to come
                _pg("stop", str(pgdir))
                down_until = time.monotonic() + 4.0
                while time.monotonic() < down_until:
                    with_key = {"Authorization": f"Bearer {key}"}
                    for path in ("/v1/tasks", "/readyz"):
                        try:
                            answers.append(
                                httpx.get(f"{cluster.base}{path}", headers=with_key, timeout=10).status_code
                            )
                        except httpx.HTTPError:
                            answers.append(0)
                    time.sleep(0.5)
                late = threading.Thread(
                    target=lambda items=items: submitted.update(cl.submit_many(cluster, key, items[4:]))
                )
                late.start()  # clients retrying through the restart
                time.sleep(0.5)
                _pg("start", str(pgdir), str(port))
                late.join()
            assert all(w.poll() is None for w in cluster.workers), "the workers survived on their own"
            assert cluster.web is not None and cluster.web.poll() is None
            cluster.settle(120)
            verdict = cl.check_nothing_lost(cluster, fakes, {})
            assert verdict.tasks == len(submitted) == outages * 8
        assert 500 not in answers, f"the API answered 500 while the database was down: {answers}"
        assert 503 in answers, answers
    finally:
        _pg("stop", str(pgdir))
        shutil.rmtree(pgdir, ignore_errors=True)
