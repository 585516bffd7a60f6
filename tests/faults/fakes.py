"""Loopback fakes for the proof runs: an upstream speaking Runway's API and webhook
receivers, all served by aiohttp on one event loop in a background thread.

Used by the fault-injection tests (``tests/faults``) and the load benchmark
(``bench/load.py``). Both fakes can *hold* requests of one kind (the upstream's
creates or polls, the receivers' deliveries) so that a test can SIGKILL a worker while
exactly that call is in flight, then *release* them.

Only loopback addresses are ever bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Delivery:
    """One webhook request as a receiver saw it."""

    receiver: int
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class _Gate:
    """Holds requests of one kind while closed; counts those waiting."""

    event: asyncio.Event
    waiting: int = 0
    seen: int = 0


@dataclass
class Fakes:
    """The running fakes; every public method is safe to call from any thread."""

    loop: asyncio.AbstractEventLoop
    upstream_url: str = ""
    receiver_urls: list[str] = field(default_factory=list)
    polls_to_finish: int = 1
    deliveries: list[Delivery] = field(default_factory=list)
    upstream_calls: dict[str, int] = field(default_factory=lambda: {"create": 0, "poll": 0, "cancel": 0})
    upstream_tasks: dict[str, int] = field(default_factory=dict)  # id -> polls answered
    lock: threading.Lock = field(default_factory=threading.Lock)
    gates: dict[str, _Gate] = field(default_factory=dict)

    # -- holding and releasing --------------------------------------------------------
    def hold(self, kind: str) -> None:
        """Stall every request of ``kind`` (``create``, ``poll``, ``delivery``) until released."""
        self._call(lambda: self.gates[kind].event.clear())

    def release(self, kind: str) -> None:
        self._call(lambda: self.gates[kind].event.set())

    def release_all(self) -> None:
        for kind in self.gates:
            self.release(kind)

    def waiting(self, kind: str) -> int:
        return self.gates[kind].waiting

    def _call(self, fn: Any) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(10)

    async def _pass(self, kind: str) -> None:
        gate = self.gates[kind]
        gate.seen += 1
        if not gate.event.is_set():
            gate.waiting += 1
            try:
                await gate.event.wait()
            finally:
                gate.waiting -= 1

    # -- what was received --------------------------------------------------------------
    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    # -- the upstream (Runway's API, answering at once) --------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        await request.read()
        await self._pass("create")
        task_id = str(uuid.uuid4())
        with self.lock:
            self.upstream_calls["create"] += 1
            self.upstream_tasks[task_id] = 0
        return web.json_response({"id": task_id})

    async def _poll(self, request: web.Request) -> web.Response:
        await self._pass("poll")
        task_id = request.match_info["id"]
        with self.lock:
            self.upstream_calls["poll"] += 1
            if task_id not in self.upstream_tasks:
                return web.json_response({"error": "Task not found"}, status=404)
            self.upstream_tasks[task_id] += 1
            polls = self.upstream_tasks[task_id]
        body: dict[str, Any] = {"id": task_id, "createdAt": "2026-11-22T19:49:32.335Z"}
        if polls < self.polls_to_finish:
            body.update(status="RUNNING", progress=polls / self.polls_to_finish)
        else:
            body.update(
                status="SUCCEEDED",
                output=[f"{self.upstream_url}/outputs/{task_id}.mp4"],
                cost={"credits": 50},
            )
        return web.json_response(body)

    async def _cancel(self, request: web.Request) -> web.Response:
        with self.lock:
            self.upstream_calls["cancel"] += 1
        return web.Response(status=204)

    async def _organization(self, request: web.Request) -> web.Response:
        tier = {"models": {"act_two": {"maxConcurrentGenerations": 100_000}}}
        return web.json_response({"creditBalance": 10**9, "tier": tier})

    # -- the receivers --------------------------------------------------------------------
    def _receiver(self, index: int) -> Any:
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            headers = {k.lower(): v for k, v in request.headers.items()}
            await self._pass("delivery")
            with self.lock:
                self.deliveries.append(
                    Delivery(index, headers.get("webhook-id", ""), headers, raw, time.monotonic())
                )
            return web.Response(text="ok")

        return handle


def _upstream_app(fakes: Fakes) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/character_performance", fakes._create)
    app.router.add_get("/v1/tasks/{id}", fakes._poll)
    app.router.add_delete("/v1/tasks/{id}", fakes._cancel)
    app.router.add_get("/v1/organization", fakes._organization)
    return app


@contextlib.contextmanager
def running(*, receivers: int = 1, polls_to_finish: int = 1) -> Iterator[Fakes]:
    """Start the upstream and ``receivers`` receivers on 127.0.0.1; stop them on exit."""
    loop = asyncio.new_event_loop()
    fakes = Fakes(loop=loop, polls_to_finish=polls_to_finish)
    started = threading.Event()
    runners: list[web.AppRunner] = []
    failure: list[BaseException] = []

    async def start() -> None:
        for kind in ("create", "poll", "delivery"):
            fakes.gates[kind] = _Gate(asyncio.Event())
            fakes.gates[kind].event.set()
        apps = [_upstream_app(fakes)]
        for i in range(receivers):
            app = web.Application()
            app.router.add_route("*", "/{path:.*}", fakes._receiver(i))
            apps.append(app)
        urls = []
        for app in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            runners.append(runner)
            port = runner.addresses[0][1]
            urls.append(f"http://127.0.0.1:{port}")
        fakes.upstream_url = urls[0]
        fakes.receiver_urls = urls[1:]

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # pragma: no cover - reported to the caller
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        for runner in runners:
            loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="proof-fakes", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield fakes
    finally:
        fakes.release_all()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


def loads(body: bytes) -> Any:
    return orjson.loads(body)
