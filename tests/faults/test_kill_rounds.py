"""Nothing lost under SIGKILL: rounds of kills against real ``callboard`` processes.

Each round submits a few tasks over HTTP (every one with a replyUrl, and the account
has a subscription too), then SIGKILLs at one chosen point:

* ``dispatch`` — a worker is inside its submit call to the upstream (held open);
* ``poll`` — a worker is inside a poll of the upstream (held open);
* ``delivery`` — a worker is waiting for a receiver's answer (held open);
* ``commit`` — just after a task's terminal event committed, before its deliveries
  were sent (the worker is killed the moment the delivery rows appear);
* ``random`` — a worker at a random moment;
* ``web`` — the web process while creates are in flight (clients retry with the
  same ``Idempotency-Key``);
* ``everything`` — web and every worker at a random moment.

Killed processes are restarted at once. After the last round the deployment runs
until everything settles, and :func:`cluster.check_nothing_lost` judges: every task
terminal, every delivery received at least once with a stable ``webhook-id`` and the
committed bytes, nothing received that was never committed, one task per
idempotency key. The everyday suite runs a few rounds per database; ``CALLBOARD_PROOF=full``
runs many (``scripts/proof``).
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import models as m
from tests.faults import cluster as cl
from tests.faults import fakes as fakes_mod
from tests.faults.conftest import FULL, scale

pytestmark = pytest.mark.timeout_sensitive

POINTS = ("dispatch", "poll", "delivery", "commit", "random", "web", "everything")
RESULTS = Path("/tmp/callboard-proof")  # figures for the README, written by full runs


def _terminal_deliveries(cluster: cl.Cluster) -> int:
    q = (
        sa.select(sa.func.count())
        .select_from(m.deliveries.join(m.events, m.events.c.id == m.deliveries.c.event_id))
        .where(m.events.c.type.in_(cl.TERMINAL_EVENTS))
    )
    return int(cluster.rows(q)[0][0])


def _kill_at(point: str, cluster: cl.Cluster, fakes: fakes_mod.Fakes, rng: random.Random, submit: Any) -> str:
    """Submit this round's tasks and SIGKILL at ``point``; what actually happened."""
    if point in ("dispatch", "poll", "delivery"):
        kind = {"dispatch": "create", "poll": "poll", "delivery": "delivery"}[point]
        fakes.hold(kind)
        thread = threading.Thread(target=submit)
        thread.start()
        try:
            cl.wait_for(lambda: fakes.waiting(kind) > 0, f"a worker inside its {kind} call", 20)
            outcome = point
        except AssertionError:
            outcome = f"{point}-not-reached"
        victims = rng.sample(cluster.workers, rng.randint(1, len(cluster.workers)))
        cluster.kill_workers(victims)
        fakes.release(kind)
        thread.join()
        return outcome
    if point == "commit":
        submit()
        before = _terminal_deliveries(cluster)
        try:
            cl.wait_for(lambda: _terminal_deliveries(cluster) > before, "a terminal event to commit", 20)
            outcome = "commit"
        except AssertionError:
            outcome = "commit-not-reached"
        cluster.kill_workers()
        return outcome
    if point == "web":
        thread = threading.Thread(target=submit)
        thread.start()
        time.sleep(rng.uniform(0.0, 0.3))
        cluster.kill_web()
        cluster.start_web()
        thread.join()
        return "web"
    thread = threading.Thread(target=submit)
    thread.start()
    time.sleep(rng.uniform(0.0, 2.0))
    if point == "everything":
        cluster.kill_web()
        cluster.kill_workers()
        cluster.start_web()
    else:
        cluster.kill_workers(rng.sample(cluster.workers, 1))
    thread.join()
    return point


def test_rounds_of_sigkill_lose_nothing(backend_url: str | None, tmp_path: Path) -> None:
    rounds = scale(len(POINTS), 70)
    per_round = scale(3, 6)
    seed = int(time.time())
    rng = random.Random(seed)
    with fakes_mod.running(receivers=2) as fakes, cl.deployment(tmp_path, backend_url, fakes) as cluster:
        key = cluster.run_cli("keys", "create", "--account", "proof", "--max-jobs", "1000")
        cluster.start_web()
        cluster.start_workers(2)
        hook = cluster.api(
            key, "POST", "/v1/webhooks", json={"url": f"{fakes.receiver_urls[1]}/subscription"}
        )
        assert hook.status_code == 201, hook.text
        secrets = {"subscription": hook.json()["secret"]}
        submitted: dict[str, str] = {}
        outcomes: list[str] = []
        started = time.monotonic()
        for n in range(rounds):
            point = POINTS[n % len(POINTS)] if n < len(POINTS) else rng.choice(POINTS)
            items = [
                (f"r{n}-t{i}", cl.body_for(f"{fakes.receiver_urls[0]}/reply/r{n}-t{i}", f"r{n}-t{i}"))
                for i in range(per_round)
            ]

            def submit(items: list[tuple[str, dict[str, Any]]] = items) -> None:
                submitted.update(cl.submit_many(cluster, key, items, threads=per_round))

            outcomes.append(_kill_at(point, cluster, fakes, rng, submit))
            if cluster.web is None or cluster.web.poll() is not None:
                cluster.start_web()
            cluster.start_workers(2)
        cluster.settle(120)
        verdict = cl.check_nothing_lost(cluster, fakes, secrets)
        by_key = dict(cluster.rows(sa.select(m.tasks.c.idempotency_key, m.tasks.c.id)))
        assert by_key == submitted, "one task per idempotency key, the one each client was answered"
        assert verdict.tasks == rounds * per_round
        assert all(s == "SUCCEEDED" for s in cluster.statuses().values())
        kills = cluster.kills
    summary = {
        "backend": "postgresql" if backend_url else "sqlite",
        "seed": seed,
        "rounds": rounds,
        "kills": kills,
        "points": {p: outcomes.count(p) for p in sorted(set(outcomes))},
        "tasks": verdict.tasks,
        "events": verdict.events,
        "deliveries": verdict.deliveries,
        "requests": verdict.requests,
        "duplicates": verdict.duplicates,
        "lost": 0,
        "seconds": round(time.monotonic() - started, 1),
    }
    print("kill rounds:", json.dumps(summary))
    if FULL:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"kills-{summary['backend']}.json").write_text(json.dumps(summary, indent=2))
