"""bench/load: 1,000 tasks submitted at once through real processes, to completion.

A deployment of real processes — ``callboard serve --no-worker`` and ``callboard worker``
— runs with ``CALLBOARD_PROVIDER=runway`` against a loopback fake upstream speaking
Runway's API (answering at once; a task is SUCCEEDED on its first poll) and 20
subscribers (loopback receivers, every event type). The client submits every task
concurrently over HTTP, then waits until every task is terminal and every delivery
succeeded. Deliveries are counted exactly: each subscriber must have received each
event once (no loss, and with no faults injected, no duplicate).

Printed: create throughput and latency percentiles, completion throughput, end-to-end
latency (create sent -> the last subscriber has the terminal webhook; Runway's 5 s
poll floor is part of it), delivery throughput. Absolute numbers drift between runs
on shared machines; compare runs made side by side.

    .venv/bin/python bench/load.py [--tasks 1000] [--subscribers 20] [--concurrency 100]
                                   [--workers 1] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service import models as m  # noqa: E402
from tests.faults import cluster as cl  # noqa: E402
from tests.faults import fakes as fakes_mod  # noqa: E402

RESULTS = Path("/tmp/callboard-proof")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 4),
        "p90": round(pct(values, 90), 4),
        "p99": round(pct(values, 99), 4),
        "max": round(max(values), 4),
        "mean": round(statistics.fmean(values), 4),
    }


async def submit_all(
    base: str, key: str, n: int, concurrency: int
) -> tuple[dict[str, float], list[float], float]:
    """Create ``n`` tasks, ``concurrency`` in flight; (task id -> monotonic send time,
    latencies, wall seconds)."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Bearer {key}"}
    ) as session:

        async def one(i: int) -> None:
            body = {**cl.BODY, "replyRef": f"load-{i}"}
            async with gate:
                for _ in range(20):
                    t0 = time.monotonic()
                    async with session.post(
                        f"{base}/v1/character_performance",
                        json=body,
                        headers={"Idempotency-Key": f"load-{i}"},
                    ) as resp:
                        data = await resp.json()
                        if resp.status == 200:
                            latencies.append(time.monotonic() - t0)
                            sent[data["id"]] = t0
                            return
                    await asyncio.sleep(0.5)
                raise RuntimeError(f"create {i} failed: {data}")

        start = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return sent, latencies, time.monotonic() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="callboard-load-"))
    with fakes_mod.running(receivers=args.subscribers) as fakes:
        with cl.deployment(
            tmp,
            args.database_url,
            fakes,
            CALLBOARD_WEBHOOK_SCHEDULE="0,5,300,1800",
            CALLBOARD_WEBHOOK_TIMEOUT="15",
            CALLBOARD_WORKER_LEASE_SECONDS="60",
            CALLBOARD_WORKER_POLL_INTERVAL="0.5",
            CALLBOARD_PROVIDER_TIMEOUT="30",
        ) as cluster:
            key = cluster.run_cli("keys", "create", "--account", "load", "--max-jobs", "1000")
            cluster.start_web()
            cluster.start_workers(args.workers)
            for url in fakes.receiver_urls:
                resp = cluster.api(key, "POST", "/v1/webhooks", json={"url": f"{url}/hook"})
                assert resp.status_code == 201, resp.text
            print(
                f"deployment up ({cluster.database_url.split(':')[0]}); submitting {args.tasks} tasks",
                flush=True,
            )
            sent, create_lat, create_wall = asyncio.run(
                submit_all(cluster.base, key, args.tasks, args.concurrency)
            )
            t_submitted = time.monotonic()
            print(f"submitted in {create_wall:.1f}s; waiting for completion", flush=True)
            cluster.settle(args.timeout)
            t_done = time.monotonic()
            events = cluster.rows(sa.select(m.events.c.id, m.events.c.task_id, m.events.c.type))
            deliveries = cluster.rows(sa.select(m.deliveries.c.id, m.deliveries.c.event_id))
            statuses = cluster.statuses()
            cluster.stop()
        received = fakes.snapshot()
    first_sent = min(sent.values())
    ids = {r.webhook_id for r in received}
    expected = len(events) * args.subscribers
    assert all(s == "SUCCEEDED" for s in statuses.values()) and len(statuses) == args.tasks, "all complete"
    assert len(deliveries) == expected, (len(deliveries), expected)
    assert ids == {d.id for d in deliveries}, "every delivery received, nothing else"
    assert len(received) == expected, f"exactly once each: {len(received)} requests for {expected} deliveries"
    terminal_at: dict[str, float] = {}
    for r in received:
        body = fakes_mod.loads(r.body)
        if body["type"] == "task.succeeded":
            tid = body["data"]["id"]
            terminal_at[tid] = max(terminal_at.get(tid, 0.0), r.at)
    e2e = [terminal_at[tid] - t0 for tid, t0 in sent.items()]
    last_delivery = max(r.at for r in received)
    result = {
        "database": "postgresql" if args.database_url else "sqlite",
        "tasks": args.tasks,
        "subscribers": args.subscribers,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "events": len(events),
        "deliveries": len(deliveries),
        "webhook_requests": len(received),
        "create_per_second": round(args.tasks / create_wall, 1),
        "create_latency_s": summary(create_lat),
        "completed_per_second": round(args.tasks / (t_done - first_sent), 1),
        "end_to_end_latency_s": summary(e2e),
        "deliveries_per_second": round(len(received) / (last_delivery - first_sent), 1),
        "seconds_after_submit_to_settled": round(t_done - t_submitted, 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"load-{result['database']}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
