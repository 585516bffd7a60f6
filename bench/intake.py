"""bench/intake: create-task throughput over loopback, as a ratio to a bare Starlette endpoint.

Both servers run the same way (one uvicorn process each, uvloop + httptools, on
127.0.0.1) and are loaded by the same client in the same run, one after the other
(bare, Callboard, bare again to show drift). The Callboard server is the embedded
default (SQLite) with its worker off, so only intake is measured: authenticate,
validate, write the task and its ``task.created`` event in one transaction, answer.

    .venv/bin/python bench/intake.py [--seconds 5] [--concurrency 64]

Goal (issue "Foundation"): ratio >= 0.3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://cdn.example.com/characters/hero-portrait.jpg"},
    "reference": {"type": "video", "uri": "https://cdn.example.com/performances/take-07.mp4"},
    "ratio": "1280:720",
    "expressionIntensity": 3,
    "bodyControl": True,
    "seed": 1234,
    "replyRef": "bench",
}

BARE_APP = """
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def create(request):
    body = orjson.loads(await request.body())
    return Response(orjson.dumps({"id": "x", "estimatedCost": {"credits": 150.0}, "model": body["model"]}),
                    media_type="application/json")

app = Starlette(routes=[Route("/v1/character_performance", create, methods=["POST"])])
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.post(url, data=b"{}") as resp:
                    await resp.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def _load(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> dict[str, float]:
    payload = json.dumps(BODY).encode()
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "errors": errors,
        "requests": len(latencies),
    }


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="callboard-bench-intake-"))
    (work / "bare_app.py").write_text(BARE_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env.update(
        {
            "CALLBOARD_DATA_DIR": str(work / "data"),
            "CALLBOARD_EMBEDDED_WORKER": "false",
            "CALLBOARD_LOG_LEVEL": "warning",
            "CALLBOARD_RATE_LIMIT": "0",
            "PYTHONPATH": str(work),
        }
    )
    python = sys.executable

    key = subprocess.run(
        [python, "-m", "service.cli", "keys", "create", "--account", "bench", "--max-jobs", "1000"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()

    bare_port, cb_port = _free_port(), _free_port()
    bare = _start(
        [
            python,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
    )
    cb = _start(
        [python, "-m", "service.cli", "serve", "--port", str(cb_port)],
        {**env, "CALLBOARD_PORT": str(cb_port)},
    )
    try:
        bare_url = f"http://127.0.0.1:{bare_port}/v1/character_performance"
        cb_url = f"http://127.0.0.1:{cb_port}/v1/character_performance"
        asyncio.run(_wait_ready(bare_url))
        asyncio.run(_wait_ready(cb_url))
        cb_headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "X-Runway-Version": "2024-11-06",
        }
        plain = {"Content-Type": "application/json"}
        asyncio.run(_load(cb_url, cb_headers, 1.0, args.concurrency))  # warm-up
        asyncio.run(_load(bare_url, plain, 1.0, args.concurrency))
        first = asyncio.run(_load(bare_url, plain, args.seconds, args.concurrency))
        ours = asyncio.run(_load(cb_url, cb_headers, args.seconds, args.concurrency))
        second = asyncio.run(_load(bare_url, plain, args.seconds, args.concurrency))
    finally:
        for proc in (bare, cb):
            proc.terminate()
            proc.wait(timeout=30)
    baseline = (first["rps"] + second["rps"]) / 2
    print(
        f"bench/intake: {args.concurrency} connections, {args.seconds:.0f} s per run, loopback, 1 uvicorn process each"
    )
    for name, r in (
        ("bare Starlette (before)", first),
        ("Callboard create", ours),
        ("bare Starlette (after)", second),
    ):
        print(
            f"  {name:24} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
            f"errors {r['errors']:.0f}/{r['requests']:.0f}"
        )
    print(f"  ratio Callboard / bare: {ours['rps'] / baseline:.2f}  (goal >= 0.30)")


if __name__ == "__main__":
    main()
