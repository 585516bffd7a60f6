"""The embedded engine as a provider: each render runs in its own spawned child process.

Rendering is synchronous and CPU-heavy, so it never runs on the event loop or in a
thread of the worker: :meth:`LocalEngine.render` starts a ``spawn`` child, relays the
engine's progress back over a pipe, and relays a stop request the other way (the
engine checks ``should_cancel`` between frames). The child also stops by itself when
its parent disappears (a SIGKILLed worker leaves no orphan render behind); another
worker then re-renders from scratch after the lease runs out — same seed, same output.

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


def _child_main(request: Any, conn: Any, parent_pid: int) -> None:  # pragma: no cover - runs in the child
    from service import engine

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


class LocalEngine:
    """Runs renders in child processes, at most ``concurrency`` at once (the runner claims
    no more than :attr:`free` tasks)."""

    name = "local"

    def __init__(self, concurrency: int = 1, *, kill_after: float = 10.0, tick: float = 0.1) -> None:
        self.concurrency = concurrency
        self.kill_after = kill_after
        self.tick = tick
        self.running = 0

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.running)

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

        parent, child = _SPAWN.Pipe()
        proc = _SPAWN.Process(
            target=_child_main, args=(request, child, os.getpid()), name="callboard-render", daemon=True
        )
        self.running += 1
        try:
            proc.start()
            child.close()
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

    async def aclose(self) -> None:
        """Renders in flight are stopped by their own callers."""
