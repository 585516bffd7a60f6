"""``GET /v1/tasks/{id}/stream``: a task's changes as server-sent events.

Each ``data:`` line is the task object exactly as ``GET /v1/tasks/{id}`` shows it,
sent once at the start and again whenever the task changes; the ``id:`` of each event
is the task's version (its ``updatedAt`` in milliseconds), so a client reconnecting
with ``Last-Event-ID`` gets nothing it has already seen. The stream ends after sending
a terminal state (SUCCEEDED, FAILED, CANCELLED). While nothing changes, a comment
line (``: keep-alive``) goes out every ``CALLBOARD_STREAM_KEEPALIVE_SECONDS`` so
proxies keep the connection open.

An idle stream holds no database connection: it re-reads the task with a short unit
of work every ``CALLBOARD_STREAM_POLL_INTERVAL`` seconds, and sooner when a commit in
this process touches tasks or deliveries (one shared :class:`Waker` per process,
registered once with ``db.listen``). Authentication: a Bearer key like every API
route, or the dashboard's session cookie (the pages use ``EventSource``, which cannot
send headers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service import errors, tasks, taskview
from service.api import context
from service.db import Database
from service.web import session as web_session

WAKE_CHANNELS = ("tasks", "deliveries")
RETRY_MS = 3000


class Waker:
    """Wakes every open stream of this process after a commit on :data:`WAKE_CHANNELS`.

    ``db.listen`` callbacks cannot be removed, so one Waker per process registers once
    and keeps the set of waiting streams; each stream adds its event while it waits.
    """

    def __init__(self, db: Database) -> None:
        self._lock = threading.Lock()
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        for channel in WAKE_CHANNELS:
            db.listen(channel, self._fire)

    def _fire(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for loop, event in waiting:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds or at the next relevant commit, whichever is first."""
        event = asyncio.Event()
        item = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiting.add(item)
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiting.discard(item)


def waker(svc: context.Services) -> Waker:
    found = svc.extras.get("stream.waker")
    if found is None:
        found = Waker(svc.db)
        svc.extras["stream.waker"] = found
    return found  # type: ignore[no-any-return]


def version(row: Any) -> str:
    """The event id for a task state: changes whenever the task object can change
    (a worker may store progress without an event, so progress is part of it)."""
    return f"{round(row.updated_at * 1000)}.{row.sequence}.{round((row.progress or 0.0) * 1000)}"


def frame(task: dict[str, Any], event_id: str) -> bytes:
    return b"id: " + event_id.encode() + b"\ndata: " + orjson.dumps(task) + b"\n\n"


async def _account(request: Request) -> dict[str, Any]:
    """Bearer key when sent (API clients), else the dashboard session."""
    if "authorization" in request.headers:
        return await context.account(request)
    current = await web_session.current(request)
    if current is None:
        raise errors.AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    return current.account


async def stream_task(request: Request) -> Response:
    context.check_version(request)
    account = await _account(request)
    svc = context.services(request)
    task_id = request.path_params["id"]
    account_id = account["id"]
    first = await svc.db.read(lambda conn: tasks.get(conn, account_id, task_id))
    last_seen = request.headers.get("last-event-id")
    settings = svc.rt.settings
    wake = waker(svc)

    async def events() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MS}\n\n".encode()
        row = first
        sent = last_seen
        idle = 0.0
        loop = asyncio.get_running_loop()
        while True:
            current = version(row)
            if current != sent:
                yield frame(taskview.view(row, svc.rt.links), current)
                sent = current
                idle = 0.0
            if row.status in taskview.TERMINAL:
                return
            if idle >= settings.stream_keepalive_seconds:
                yield b": keep-alive\n\n"
                idle = 0.0
            started = loop.time()
            await wake.wait(min(settings.stream_poll_interval, settings.stream_keepalive_seconds - idle))
            idle += loop.time() - started
            try:
                row = await svc.db.read(lambda conn: tasks.get(conn, account_id, task_id))
            except errors.NotFound:
                return  # deleted while watched: nothing more will come

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


routes = [Route("/v1/tasks/{id}/stream", stream_task, methods=["GET"])]

SCHEMAS: dict[str, Any] = {}
PATHS: dict[str, Any] = {
    "/v1/tasks/{id}/stream": {
        "get": {
            "summary": "Follow a task's changes as server-sent events",
            "description": (
                "Each event's data is the task object exactly as GET /v1/tasks/{id} returns it: "
                "sent at once, then whenever the task changes. The event id is the task's version "
                "(send it back as Last-Event-ID when reconnecting). The stream ends after a terminal "
                "status; comment lines keep an idle connection alive. Authenticate with a Bearer "
                "key (or the dashboard's session cookie)."
            ),
            "operationId": "streamTask",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "A text/event-stream of task objects",
                    "content": {
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "example": 'id: 1795000000000.1.400\ndata: {"id":"…","status":"RUNNING",'
                            '"createdAt":"…","estimatedCost":{"credits":150.0},"progress":0.4,'
                            '"updatedAt":"…"}\n\n',
                        }
                    },
                }
            },
        }
    }
}
