"""The worker: a thin loop around ``run_once() -> bool``.

Each *job* (dispatch/poll/cancel of tasks, webhook deliveries, retention...) exposes
``async run_once() -> bool`` — True when it did some work and should be called again
soon. The loop calls every job; when none did anything it sleeps until a commit in
this process wakes it (``service.db.notify``) or the poll interval passes (work
committed by other processes, and scheduled work coming due). All scheduled work lives
in the database, so stopping and restarting workers loses nothing.

SIGTERM (``request_stop``) stops the loop from starting new rounds; jobs finish or
release what they hold in ``aclose()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any, Protocol

import sqlalchemy as sa

from service.db import Database
from service.runtime import Runtime

log = logging.getLogger(__name__)


class Job(Protocol):
    name: str

    async def run_once(self) -> bool: ...

    async def aclose(self) -> None: ...


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Worker:
    def __init__(self, db: Database, rt: Runtime, jobs: list[Job], *, ident: str | None = None) -> None:
        self.db = db
        self.rt = rt
        self.jobs = jobs
        self.ident = ident or worker_id()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff = 0.0

    @classmethod
    def build(
        cls,
        db: Database,
        rt: Runtime,
        *,
        ident: str | None = None,
        provider: Any = None,
        http: Any = None,
    ) -> Worker:
        """The worker with every job this deployment runs.

        ``provider`` (a remote provider) and ``http`` (the client media fetches inputs
        with) are injected by tests; otherwise ``CALLBOARD_PROVIDER`` decides.
        """
        from service import runner
        from service.media import retention
        from service.webhooks import delivery

        ident = ident or worker_id()
        jobs: list[Job] = [
            # tasks: cancel, dispatch and poll on the provider (service.runner)
            runner.TaskRunner.build(db, rt, ident=ident, provider=provider, http=http),
            # webhooks: deliveries of task events (service.webhooks.delivery)
            delivery.DeliveryJob(db, rt, ident=ident),
            # media: deletes stored files past their retention (service.media.retention)
            retention.RetentionJob(db, rt),
        ]
        return cls(db, rt, jobs, ident=ident)

    # -- waking -----------------------------------------------------------------------
    def _on_commit(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ---------------------------------------------------------------------
    async def run_once(self) -> bool:
        """One round over every job; True if any of them did work."""
        did = False
        for job in self.jobs:
            if self._stop.is_set():
                break
            if await job.run_once():
                did = True
        return did

    async def _guarded_round(self) -> bool:
        """A round that survives a database outage: back off (up to 30 s) and retry."""
        try:
            did = await self.run_once()
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError) as exc:
            self._backoff = min(30.0, max(0.5, self._backoff * 2))
            log.warning("worker %s: database error, retrying in %.1fs: %s", self.ident, self._backoff, exc)
            await self._sleep(self._backoff)
            return False
        self._backoff = 0.0
        return did

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _attach(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            for channel in ("tasks", "deliveries"):
                self.db.listen(channel, self._on_commit)

    async def run(self) -> None:
        """Run until :meth:`request_stop`; then close every job."""
        self._attach()
        log.info(
            "worker %s started with jobs: %s", self.ident, ", ".join(j.name for j in self.jobs) or "none"
        )
        try:
            while not self._stop.is_set():
                self._wake.clear()
                if not await self._guarded_round():
                    await self._sleep(self.rt.settings.worker_poll_interval)
        finally:
            await self.aclose()

    async def run_until_idle(self, *, max_rounds: int = 100_000) -> int:
        """Drain mode (tests, benchmarks, ``callboard worker --until-idle``): run rounds
        until one does nothing; returns the number of busy rounds."""
        self._attach()
        busy = 0
        while busy < max_rounds and not self._stop.is_set():
            if not await self.run_once():
                break
            busy += 1
        return busy

    async def aclose(self) -> None:
        for job in self.jobs:
            try:
                await job.aclose()
            except Exception:  # pragma: no cover - closing must reach every job
                log.exception("closing job %s failed", job.name)
