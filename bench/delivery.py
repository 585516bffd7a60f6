"""bench/delivery: webhook delivery throughput and terminal-to-first-attempt latency.

Throughput: N deliveries (signed, sent, every attempt logged and committed) to a
loopback receiver, as a ratio to a plain aiohttp POST loop sending the same bodies to
the same receiver at the same concurrency, measured side by side in one run (plain,
Callboard, plain again to show drift). The receiver is a separate process (aiohttp).

Latency: tasks turn SUCCEEDED one at a time at random moments while a worker runs its
normal loop (woken by ``db.notify(conn, "deliveries")`` after each commit); the time
from the transition to the first attempt's start is read from the delivery log.

    .venv/bin/python bench/delivery.py [--count 3000] [--concurrency 64] [--terminal 200]
                                       [--database-url postgresql://...]

Goals (issue "signed webhooks"): ratio >= 0.5; p99 latency <= 0.5 s on the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import sqlalchemy as sa
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service import accounts, events, runtime, schema, tasks, taskspec  # noqa: E402
from service import models as m  # noqa: E402
from service import settings as settings_mod  # noqa: E402
from service import worker as worker_mod  # noqa: E402
from service.db import Database  # noqa: E402
from service.webhooks import delivery, endpoints  # noqa: E402

DATA = {
    "id": "6be1f328-0d4c-4b8a-9f52-6f9c1b0e2d11",
    "status": "SUCCEEDED",
    "createdAt": "2026-11-22T19:49:32.335Z",
    "cost": {"credits": 50},
    "output": ["https://callboard.example/files/" + "x" * 600 + "/output.mp4"],
    "replyRef": "bench",
    "updatedAt": "2026-11-22T19:50:12.001Z",
    "sequence": 3,
}


def _receiver(port: int, ready: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def plain_loop(url: str, body: bytes, count: int, concurrency: int) -> float:
    """Deliveries/s of the floor: the same POSTs with aiohttp and nothing else."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                    await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def setup(
    database_url: str | None, tmp: str, url: str, concurrency: int
) -> tuple[Any, Any, Database, Any, Any]:
    env = {
        "CALLBOARD_DATA_DIR": tmp,
        "CALLBOARD_SECRET_KEY": "bench-secret-key-0123456789",
        "CALLBOARD_ALLOW_PRIVATE_TARGETS": "127.0.0.1",
        "CALLBOARD_WORKER_BATCH_SIZE": "200",
        "CALLBOARD_WORKER_POLL_INTERVAL": "0.5",
    }
    if database_url:
        env["CALLBOARD_DATABASE_URL"] = database_url
    settings = settings_mod.load(env)
    schema.upgrade(settings.database_url)
    rt = runtime.build(settings)
    db = Database(settings.database_url)

    def unit(conn: Any) -> tuple[dict[str, Any], Any]:
        account = accounts.create_account(conn, f"bench-{os.getpid()}-{time.time()}", rt.now())
        ep = endpoints.create(
            conn,
            account_id=account["id"],
            kind="subscription",
            values={"url": url, "max_concurrency": min(concurrency, 100), "event_types": ["task.succeeded"]},
            now=rt.now(),
        )
        return account, ep

    account, ep = db.write_sync(unit)
    return settings, rt, db, account, ep


async def callboard_throughput(db: Database, rt: Any, account: dict[str, Any], ep: Any, count: int) -> float:
    def enqueue(conn: Any, n: int) -> None:
        for _ in range(n):
            events.record(
                conn, account_id=account["id"], event_type="task.succeeded", data=DATA, now=rt.now()
            )

    for start in range(0, count, 500):
        size = min(500, count - start)
        await db.write(lambda conn, n=size: enqueue(conn, n))
    count_q = (
        sa.select(sa.func.count())
        .select_from(m.deliveries)
        .where(m.deliveries.c.endpoint_id == ep.id, m.deliveries.c.status == "succeeded")
    )
    w = worker_mod.Worker(db, rt, [delivery.DeliveryJob(db, rt, ident="bench")])
    began = time.perf_counter()
    runner = asyncio.create_task(w.run())
    deadline = time.monotonic() + 600
    while True:
        done = await db.read(lambda conn: conn.execute(count_q).scalar_one())
        if done >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - began
    w.request_stop()
    await runner
    assert done >= count, f"only {done} of {count} delivered"
    return count / elapsed


async def terminal_latency(db: Database, rt: Any, account: dict[str, Any], n: int) -> list[float]:
    spec = taskspec.parse(
        {
            "model": "act_two",
            "character": {"type": "image", "uri": "https://example.com/c.jpg"},
            "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
        }
    )
    ids = []
    for _ in range(n):
        row, _, _ = await db.write(
            lambda conn: tasks.create(
                conn, rt, account=account, spec=spec, provider="local", estimated_credits=1.0
            )
        )
        ids.append(row.id)
    w = worker_mod.Worker(db, rt, [delivery.DeliveryJob(db, rt, ident="bench-latency")])
    runner = asyncio.create_task(w.run())
    await asyncio.sleep(0.2)
    for task_id in ids:
        await asyncio.sleep(random.uniform(0.005, 0.03))
        await db.write(
            lambda conn, task_id=task_id: tasks.transition(
                conn,
                rt,
                task_id,
                expected=("PENDING",),
                values={"status": "SUCCEEDED", "cost_credits": 1, "finished_at": rt.now(), "run_at": None},
                event="task.succeeded",
            )
        )
    deadline = time.monotonic() + 30
    ev, d, a = m.events, m.deliveries, m.attempts
    query = (
        sa.select(ev.c.created_at, sa.func.min(a.c.started_at))
        .join(d, d.c.event_id == ev.c.id)
        .join(a, a.c.delivery_id == d.c.id)
        .where(ev.c.task_id.in_(ids), ev.c.type == "task.succeeded")
        .group_by(ev.c.id, ev.c.created_at)
    )
    while True:
        rows = await db.read(lambda conn: conn.execute(query).all())
        if len(rows) >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    w.request_stop()
    await runner
    return sorted(first - created for created, first in rows)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main_async(args: argparse.Namespace, url: str) -> None:
    body = orjson.dumps({"type": "task.succeeded", "timestamp": "2026-11-22T19:50:12.001Z", "data": DATA})
    with tempfile.TemporaryDirectory() as tmp:
        settings, rt, db, account, ep = setup(args.database_url, tmp, url, args.concurrency)
        try:
            await plain_loop(url, body, 300, args.concurrency)  # warm up
            plain1 = await plain_loop(url, body, args.count, args.concurrency)
            ours = await callboard_throughput(db, rt, account, ep, args.count)
            plain2 = await plain_loop(url, body, args.count, args.concurrency)
            latencies = await terminal_latency(db, rt, account, args.terminal)
        finally:
            db.close()
    plain = statistics.mean([plain1, plain2])
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    print(
        f"database: {backend}; {args.count} deliveries of {len(body)} bytes, concurrency {args.concurrency}"
    )
    print(f"plain aiohttp POST loop : {plain1:8.0f} /s, then {plain2:8.0f} /s (drift)")
    print(f"callboard deliveries    : {ours:8.0f} /s (signed, sent, attempt logged, committed)")
    print(f"ratio                   : {ours / plain:8.2f}   (goal >= 0.5)")
    if latencies:
        print(
            f"terminal -> first attempt over {len(latencies)} tasks: p50 {pct(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {pct(latencies, 0.99) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms   (goal p99 <= 500 ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--terminal", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    port = free_port()
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_receiver, args=(port, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(20):
            raise SystemExit("receiver did not start")
        asyncio.run(main_async(args, f"http://127.0.0.1:{port}/hook"))
    finally:
        proc.terminate()
        proc.join(10)


if __name__ == "__main__":
    main()
