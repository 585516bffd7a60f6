"""Polling throughput: one worker process tracking 10,000 in-flight upstream tasks.

A fake Runway (a raw asyncio HTTP/1.1 server on loopback, in its own process so its CPU
is not counted) answers every ``GET /v1/tasks/{id}`` with a RUNNING task whose progress
does not change, so a poll costs: its share of a batch claim (one transaction that also
schedules the next poll), one HTTP round trip through the provider's client (plain
aiohttp in production; the httpx API on its aiohttp transport for comparison), and no
write. The bench polls every task once per
configuration, side by side in one run, and prints polls per second and CPU per poll
(process time of the worker, all its threads) — goal: 10,000 tasks every 5 s on one
core, i.e. >= 2,000 polls/s.

    .venv/bin/python bench/poll.py [--tasks 10000] [--batches 10,50,200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from service import accounts, outbound, runner, runtime, schema  # noqa: E402
from service import models as m  # noqa: E402
from service import settings as settings_mod  # noqa: E402
from service.db import Database  # noqa: E402
from service.providers import runway  # noqa: E402

BODY = b'{"id":"x","status":"RUNNING","createdAt":"2026-01-01T00:00:00.000Z","progress":0.5,"estimatedCost":{"credits":25.0}}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class _Upstream(asyncio.Protocol):
    """Answers each request (headers only, no bodies on GET) with the canned task."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


def _serve(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _seed(db: Database, n: int, now: float) -> None:
    def unit(conn: sa.Connection) -> None:
        account = accounts.create_account(conn, "bench", now, max_jobs=1000)
        rows = [
            {
                "id": str(uuid.uuid4()),
                "account_id": account["id"],
                "model": "act_two",
                "status": "RUNNING",
                "spec": {},
                "provider": "runway",
                "provider_task_id": f"up-{i}",
                "estimated_credits": 25.0,
                "progress": 0.5,
                "created_at": now,
                "updated_at": now,
                "started_at": now,
                "run_at": now,
                "fence": 0,
                "attempts": 0,
                "cancel_pending": False,
                "sequence": 1,
            }
            for i in range(n)
        ]
        for start in range(0, n, 1000):
            conn.execute(m.tasks.insert(), rows[start : start + 1000])

    db.write_sync(unit)


async def _pass(db: Database, rt: runtime.Runtime, n: int, kind: str) -> tuple[float, float, int]:
    """Poll every task once; (wall seconds, CPU seconds, polls)."""
    client: Any = (
        outbound.session(allow=None)
        if kind == "aiohttp"
        else outbound.httpx_client(allow=None, read_timeout=10)
    )
    provider = runway.RunwayProvider(
        client, base_url=rt.settings.runway_base_url, api_key="bench", clock=rt.clock
    )
    job = runner.TaskRunner(db, rt, ident="bench", provider=provider)
    # warm the connection pool and the code paths outside the measurement
    await provider.poll("warm-up", age=100)
    polls = 0
    real_poll = provider.poll

    async def counted(provider_task_id: str, *, age: float = 0.0) -> object:
        nonlocal polls
        polls += 1
        return await real_poll(provider_task_id, age=age)

    provider.poll = counted  # type: ignore[method-assign]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    # every task once; if a pass takes longer than the 5 s poll interval, the first
    # tasks come due again and are polled again: still polls, still counted
    while polls < n and await job.run_once():
        pass
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await job.aclose()
    await (client.close() if kind == "aiohttp" else client.aclose())
    return wall, cpu, polls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batches", default="50,200")
    parser.add_argument("--clients", default="aiohttp,httpx", help="provider HTTP clients to compare")
    parser.add_argument(
        "--postgres", help="a scratch PostgreSQL database (its schema is dropped and rebuilt)"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    port = 20000 + os.getpid() % 20000
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    upstream = ctx.Process(target=_serve, args=(port, ready), daemon=True)
    upstream.start()
    ready.wait(10)
    print(f"polling {args.tasks} in-flight tasks against a loopback fake upstream (port {port})")
    print(
        f"{'client':8} {'database':10} {'batch':>6} {'polls':>7} {'seconds':>8} {'polls/s':>9} {'CPU µs/poll':>12} {'10k every 5s':>13}"
    )
    try:
        for kind, batch in [(k, int(b)) for k in args.clients.split(",") for b in args.batches.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                env = {
                    "CALLBOARD_DATA_DIR": tmp,
                    "CALLBOARD_SECRET_KEY": "bench-secret-key-0123456789",
                    "CALLBOARD_PROVIDER": "runway",
                    "CALLBOARD_RUNWAY_BASE_URL": f"http://127.0.0.1:{port}",
                    "CALLBOARD_WORKER_BATCH_SIZE": str(batch),
                }
                if args.postgres:
                    env["CALLBOARD_DATABASE_URL"] = args.postgres
                settings = settings_mod.load(env)
                if args.postgres:
                    schema.downgrade(settings.database_url, "base")
                schema.upgrade(settings.database_url)
                db = Database(settings.database_url)
                rt = runtime.build(settings)
                try:
                    _seed(db, args.tasks, rt.now() - 1)
                    wall, cpu, polled = asyncio.run(_pass(db, rt, args.tasks, kind))
                finally:
                    db.close()
                rate = polled / wall
                verdict = "yes" if rate * 5 >= 10_000 else "no"
                name = "postgresql" if args.postgres else "sqlite"
                print(
                    f"{kind:8} {name:10} {batch:>6} {polled:>7} {wall:>8.2f} {rate:>9.0f} {cpu / polled * 1e6:>12.0f} {verdict:>13}"
                )
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()
