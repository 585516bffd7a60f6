"""The embedded engine as a provider: each render runs in its own spawned child process.

Rendering is synchronous and CPU-heavy, so it never runs on the event loop or in a
thread of the worker: :meth:`LocalEngine.render` hands the job to a ``spawn`` child,
relays the engine's progress back over a pipe, and relays a stop request the other way
(the engine checks ``should_cancel`` between frames). The child also stops by itself
when its parent disappears (a SIGKILLed worker leaves no orphan render behind); another
worker then re-renders from scratch after the lease runs out — same seed, same output.

Each child renders one job and exits, so nothing leaks from one job into the next. With
``prewarm`` the engine keeps a *spare* child per free slot that has already loaded the
engine (``engine.preload``: about 3 s of imports and compilation on this hardware) and
waits for its job, so a render starts at once. Spares are started when a slot frees up
(never while a render on this worker could use the CPU for its own start) and stop with
the worker or when their parent disappears.

A child that does not stop within ``kill_after`` seconds of a stop request is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
PROGRESS_EVERY = 0.25  # seconds between progress messages from the child
SPARE_CHECK_EVERY = 1.0  # seconds between a waiting spare's checks that its parent lives


def _child_main(conn: Any, parent_pid: int) -> None:  # pragma: no cover - runs in the child
    """Load the engine, wait for one ("render", request) message, render it, exit."""
    from service import engine

    engine.preload()
    request = None
    try:
        conn.send(("ready",))
        while request is None:
            if os.getppid() != parent_pid:
                return
            if conn.poll(SPARE_CHECK_EVERY):
                message = conn.recv()
                if message[0] != "render":
                    return  # "exit": the worker is shutting down
                request = message[1]
    except (EOFError, OSError):
        return

    stop = [False]
    last = [0.0]

    def progress(value: float) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY or value >= 1.0:
            last[0] = now
            try:
                conn.send(("progress", float(value)))
            except (BrokenPipeError, OSError):
                stop[0] = True

    def should_cancel() -> bool:
        if os.getppid() != parent_pid:
            return True
        try:
            while conn.poll():
                if conn.recv() == "stop":
                    stop[0] = True
        except (EOFError, OSError):
            stop[0] = True
        return stop[0]

    try:
        result = engine.render(request, progress=progress, should_cancel=should_cancel)
        message: tuple[Any, ...] = ("done", result)
    except engine.RenderCancelled:
        message = ("cancelled",)
    except engine.EngineError as exc:
        message = ("error", exc.failure_code, exc.message)
    except BaseException as exc:
        message = ("crash", f"{type(exc).__name__}: {exc}")
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass
    finally:
        conn.close()


class RenderCrashed(Exception):
    """The render process died or failed unexpectedly (not a clean EngineError)."""


class _Child:
    """A render process and the parent's end of its pipe."""

    def __init__(self, parent_pid: int) -> None:
        self.conn, child_end = _SPAWN.Pipe()
        self.proc = _SPAWN.Process(
            target=_child_main, args=(child_end, parent_pid), name="callboard-render", daemon=True
        )
        self.proc.start()
        child_end.close()

    def stop(self) -> None:
        """Ask a waiting child to exit; kill it if it is not gone within a second."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(("exit",))
        self.proc.join(1.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class LocalEngine:
    """Runs renders in child processes, at most ``concurrency`` at once (the runner claims
    no more than :attr:`free` tasks), with up to one warm spare per free slot when
    ``prewarm`` is on."""

    name = "local"

    def __init__(
        self, concurrency: int = 1, *, kill_after: float = 10.0, tick: float = 0.1, prewarm: bool = False
    ) -> None:
        self.concurrency = concurrency
        self.kill_after = kill_after
        self.tick = tick
        self.prewarm = prewarm
        self.running = 0
        self._spares: list[_Child] = []
        self._closed = False

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.running)

    @property
    def spares(self) -> int:
        """Warm (or warming) spare render processes alive now."""
        self._prune()
        return len(self._spares)

    def _prune(self) -> None:
        """Forget spares that died (and close their pipes)."""
        alive = []
        for child in self._spares:
            if child.proc.is_alive():
                alive.append(child)
            else:
                child.conn.close()
        self._spares = alive

    def refill(self) -> None:
        """Start spares until every free slot has one (no-op without ``prewarm``)."""
        if not self.prewarm or self._closed:
            return
        for _ in range(self.free - self.spares):
            self._spares.append(_Child(os.getpid()))

    def _take(self) -> _Child:
        self._prune()
        return self._spares.pop(0) if self._spares else _Child(os.getpid())

    async def render(
        self,
        request: Any,
        *,
        on_progress: Callable[[float], None],
        should_stop: Callable[[], bool],
    ) -> Any:
        """Render ``request`` (an ``engine.RenderRequest``); the ``engine.RenderResult``.

        Raises ``engine.EngineError`` (clean failure), ``engine.RenderCancelled`` (after
        ``should_stop()`` turned True) or :class:`RenderCrashed`.
        """
        from service import engine

        self.running += 1
        child = self._take()
        parent, proc = child.conn, child.proc
        try:
            with contextlib.suppress(BrokenPipeError, OSError):  # a dead child shows below
                parent.send(("render", request))
            stop_sent_at: float | None = None
            while True:
                if stop_sent_at is None and should_stop():
                    stop_sent_at = time.monotonic()
                    with contextlib.suppress(BrokenPipeError, OSError):
                        parent.send("stop")
                try:
                    while parent.poll():
                        message = parent.recv()
                        kind = message[0]
                        if kind == "ready":
                            continue
                        if kind == "progress":
                            on_progress(message[1])
                        elif kind == "done":
                            return message[1]
                        elif kind == "cancelled":
                            raise engine.RenderCancelled()
                        elif kind == "error":
                            raise engine.EngineError(message[1], message[2])
                        else:
                            raise RenderCrashed(message[1])
                except EOFError:
                    proc.join(timeout=5)
                    raise RenderCrashed(f"the render process exited with code {proc.exitcode}") from None
                if not proc.is_alive() and not parent.poll():
                    raise RenderCrashed(f"the render process exited with code {proc.exitcode}")
                if stop_sent_at is not None and time.monotonic() - stop_sent_at > self.kill_after:
                    raise engine.RenderCancelled()
                await asyncio.sleep(self.tick)
        finally:
            self.running -= 1
            if proc.is_alive():
                proc.kill()
            await asyncio.to_thread(proc.join, 10)
            parent.close()
            self.refill()

    async def aclose(self) -> None:
        """Stop the spares; renders in flight are stopped by their own callers."""
        self._closed = True
        spares, self._spares = self._spares, []
        for child in spares:
            await asyncio.to_thread(child.stop)
