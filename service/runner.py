"""The task jobs: dispatch, poll, cancel — tasks really run on their provider.

One :class:`TaskRunner` per worker process is the worker's ``tasks`` job. Each round:

1. **cancel** — provider jobs of cancelled (or timed-out) tasks are cancelled upstream,
   retried with backoff; a local render in progress is stopped.
2. **dispatch** — due PENDING/THROTTLED tasks are given provider slots fairly: every
   account's ``maxJobs`` caps its tasks at the provider, accounts take turns (oldest
   waiting task first), each account is served FIFO, and the provider's own
   concurrency is respected. Tasks that cannot have a slot show THROTTLED.
3. **poll** — due tasks at a remote provider are polled (at most once per task per
   ``CALLBOARD_RUNWAY_POLL_INTERVAL``, never under 5 s) and their state is carried over;
   for the local engine, renders whose worker died are rendered again.

Every claim is a batch taken in one transaction with a lease and a new fence
(:func:`service.claims.claim_due`); every write afterwards is conditional on that fence,
so a late worker never overwrites newer state. All scheduling (next poll, backoff)
lives in ``tasks.run_at``. Policies (fair shares, backoff, poll outcome) are pure
functions below, tested as tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx

from service import claims, errors, media, outbound, providers, renders, tasks
from service import db as db_mod
from service.db import Database
from service.providers import base, policy
from service.providers import local as local_mod
from service.runtime import Runtime

log = logging.getLogger(__name__)

# Polls claim this many worker batches at once: a poll needs no write when nothing
# changed, so bigger claims pay off (bench/poll.py: 200 per claim reached 10,000 tasks
# every 5 s on one core where 50 did not).
POLL_BATCH_FACTOR = 4


def _is_cancelled(conn: Any, claim: Any) -> bool:
    """Whether the claimed task has been cancelled (or deleted) by its owner."""
    try:
        return bool(tasks.get(conn, claim.account_id, claim.id).status == "CANCELLED")
    except errors.NotFound:
        return False


class TaskRunner:
    """The worker's ``tasks`` job for one provider (remote, or the local engine)."""

    name = "tasks"

    def __init__(
        self,
        db: Database,
        rt: Runtime,
        *,
        ident: str,
        provider: base.Provider | None = None,
        engine_runner: local_mod.LocalEngine | None = None,
        http: httpx.AsyncClient | None = None,
        owned_clients: tuple[httpx.AsyncClient, ...] = (),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.rt = rt
        self.settings = rt.settings
        self.ident = ident
        self.provider = provider
        self.provider_name = provider.name if provider is not None else "local"
        self.rand = rand
        self._http = http
        self._owned = list(owned_clients)
        self.renders = renders.LocalRenders(self, engine_runner) if engine_runner is not None else None
        self._closing = False
        self._sessions: list[Any] = []  # aiohttp sessions the built-in provider made

    @classmethod
    def build(
        cls,
        db: Database,
        rt: Runtime,
        *,
        ident: str,
        provider: base.Provider | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> TaskRunner:
        """The runner for ``CALLBOARD_PROVIDER``. Tests inject ``provider`` (a remote
        provider on a respx client) and/or ``http`` (the client media fetches with)."""
        settings = rt.settings
        if provider is not None:
            return cls(db, rt, ident=ident, provider=provider, http=http)
        if settings.provider in providers.REMOTE:
            # The operator-configured upstream (no SSRF guard: it may well be private), on
            # plain aiohttp: polling thousands of tasks is the hot path (bench/poll.py).
            sessions: list[Any] = []

            def session() -> Any:
                sessions.append(outbound.session(allow=None, total_timeout=settings.provider_timeout + 5))
                return sessions[-1]

            remote = providers.build_remote(settings.provider, settings, session, rt.clock)
            runner = cls(db, rt, ident=ident, provider=remote, http=http)
            runner._sessions = sessions
            return runner
        engine_runner = local_mod.LocalEngine(settings.local_concurrency, prewarm=settings.local_prewarm)
        return cls(db, rt, ident=ident, engine_runner=engine_runner, http=http)

    @property
    def http(self) -> httpx.AsyncClient:
        """The SSRF-guarded client media fetches user-supplied URLs with (made on first
        use, inside the running loop)."""
        if self._http is None:
            self._http = outbound.httpx_client(allow=self.rt.allow, read_timeout=self.settings.fetch_timeout)
            self._owned.append(self._http)
        return self._http

    @property
    def batch(self) -> int:
        return self.settings.worker_batch_size

    # -- the round ------------------------------------------------------------------------
    async def run_once(self) -> bool:
        """Cancel, dispatch, poll. True while anything was done or renders are in flight
        (drain mode therefore waits for renders to end)."""
        if self._closing:
            return False
        did = await self._cancels()
        did = await self._dispatch() or did
        did = await self._polls() or did
        if self.renders is not None:
            self.renders.engine.refill()
        if self.renders is not None and self.renders.busy:
            if not did:
                await self.renders.wait(0.2)
            return True
        return did

    async def _transition(self, claim: Any, change: policy.Change, expected: tuple[str, ...]) -> bool:
        def unit(conn: Any) -> bool:
            applied = tasks.transition(
                conn,
                self.rt,
                claim.id,
                expected=expected,
                values=change.values,
                event=change.event,
                fence=claim.fence,
            )
            if applied and change.terminal:
                db_mod.notify(conn, tasks.WORK_CHANNEL)  # a slot is free: wake dispatchers
            return applied

        return await self.db.write(unit)

    async def _release(self, claim: Any, values: dict[str, Any], *, fence: int | None = None) -> bool:
        fence = claim.fence if fence is None else fence
        return await self.db.write(
            lambda conn: claims.release(conn, self.rt, claim.id, fence=fence, values=values)
        )

    async def _transition_many(self, items: list[tuple[Any, policy.Change]]) -> None:
        """Apply a batch of poll outcomes in one unit of work (one commit)."""

        def unit(conn: Any) -> None:
            terminal = False
            for claim, change in items:
                applied = tasks.transition(
                    conn,
                    self.rt,
                    claim.id,
                    expected=(claim.status,),
                    values=change.values,
                    event=change.event,
                    fence=claim.fence,
                )
                terminal = terminal or (applied and change.terminal)
            if terminal:
                db_mod.notify(conn, tasks.WORK_CHANNEL)

        if items:
            await self.db.write(unit)

    # -- cancel -----------------------------------------------------------------------------
    async def _cancels(self) -> bool:
        lease = self.settings.provider_timeout + 5.0
        taken = await self.db.write(
            lambda conn: claims.claim_due(
                conn,
                self.rt,
                kind="cancel",
                provider=self.provider_name,
                owner=self.ident,
                limit=self.batch,
                lease=lease,
                next_run_in=lease,
            )
        )
        if not taken:
            return False
        await asyncio.gather(*(self._cancel_one(claim) for claim in taken))
        return True

    async def _cancel_one(self, claim: Any) -> None:
        if self.renders is not None:
            self.renders.stop(claim.id, "cancelled")
        if self.provider is not None and claim.provider_task_id:
            try:
                await self.provider.cancel(claim.provider_task_id)
            except base.ProviderError as exc:
                attempt = claim.attempts + 1
                if attempt <= self.settings.provider_max_retries:
                    delay = policy.backoff(
                        attempt, retry_after=getattr(exc, "retry_after", None), rand=self.rand
                    )
                    await self._release(claim, {"attempts": attempt, "run_at": self.rt.now() + delay})
                    return
                log.warning("giving up cancelling %s upstream: %s", claim.id, exc.message)
        await self._release(claim, {"cancel_pending": False, "run_at": None, "attempts": 0})

    # -- dispatch -------------------------------------------------------------------------
    async def _dispatch(self) -> bool:
        limit = self.batch if self.renders is None else min(self.batch, self.renders.room)
        if limit <= 0:
            return False
        capacity = await self.provider.capacity() if self.provider is not None else None
        taken = await self.db.write(lambda conn: self._dispatch_unit(conn, limit, capacity))
        if not taken:
            return False
        if self.renders is not None:
            for claim in taken:
                self.renders.start(claim)
        else:
            await asyncio.gather(*(self._submit(claim) for claim in taken))
        return True

    def _dispatch_unit(self, conn: Any, limit: int, capacity: int | None) -> list[Any]:
        claims.lock_dispatch(conn)
        claims.release_orphan_slots(conn, self.rt)
        waiting = claims.waiting_by_account(conn, self.rt)
        if not waiting:
            return []
        in_use = claims.slots_in_use(conn, [row.account_id for row in waiting])
        global_free = None
        if capacity is not None:
            global_free = capacity - claims.provider_slots_in_use(conn, self.provider_name)
        grants, throttle, throttle_all = policy.plan_dispatch(
            [(row.account_id, int(row.waiting), int(row.max_jobs)) for row in waiting],
            in_use,
            global_free,
            limit,
        )
        chosen = [
            tid for account, n in grants.items() for tid in claims.oldest_waiting(conn, self.rt, account, n)
        ]
        taken = claims.claim_for_dispatch(
            conn,
            self.rt,
            chosen,
            provider=self.provider_name,
            owner=self.ident,
            lease=self.settings.worker_lease_seconds,
            start_running=self.renders is not None,
        )
        claims.throttle_waiting(conn, self.rt, None if throttle_all else throttle)
        return taken

    async def _submit(self, claim: Any) -> None:
        assert self.provider is not None
        spec = claim.spec
        now = self.rt.now()
        try:
            uris = [
                await media.provider_uri(
                    self.db,
                    self.rt,
                    self.http,
                    account_id=claim.account_id,
                    task_id=claim.id,
                    role=role,
                    ref=spec[role],
                    upload=self.provider.upload,
                )
                for role in ("character", "reference")
            ]
            provider_task_id = await self.provider.submit(base.Job.from_spec(spec, uris[0], uris[1]))
        except media.MediaError as exc:
            if exc.retryable:
                await self._requeue(claim, exc.message, retry_after=None)
            else:
                await self._transition(
                    claim, policy.failed(exc.failure_code, exc.message, now), claims.WAITING
                )
            return
        except base.Throttled as exc:
            delay = policy.backoff(1, retry_after=exc.retry_after, rand=self.rand)
            await self._release(claim, {"status": "THROTTLED", "started_at": None, "run_at": now + delay})
            return
        except base.Transient as exc:
            await self._requeue(claim, exc.message, retry_after=exc.retry_after)
            return
        except base.ProviderError as exc:
            await self._transition(claim, policy.failed(exc.failure_code, exc.message, now), claims.WAITING)
            return
        values = {
            "status": "PENDING",
            "provider_task_id": provider_task_id,
            "attempts": 0,
            "run_at": self.rt.now() + self.settings.provider_poll_interval,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if await self._transition(claim, policy.Change(values), claims.WAITING):
            return
        # Our claim is gone. Either the task was cancelled while we submitted (the DELETE
        # bumped the fence once): record the upstream job so the cancel job stops it. Or
        # our lease ran out and another worker claimed the task again (which bumps the
        # fence once too): the task is theirs, and ours is a duplicate upstream job —
        # recording it would clobber their claim — so it is cancelled here and now.
        if await self.db.read(lambda conn: _is_cancelled(conn, claim)):
            orphan = {"provider_task_id": provider_task_id, "cancel_pending": True, "run_at": self.rt.now()}
            if await self._release(claim, orphan, fence=claim.fence + 1):
                return
        with contextlib.suppress(base.ProviderError):
            await self.provider.cancel(provider_task_id)

    async def _requeue(self, claim: Any, message: str, *, retry_after: float | None) -> None:
        """Back to waiting after a transient failure, or FAILED once retries run out."""
        attempt = claim.attempts + 1
        now = self.rt.now()
        if attempt > self.settings.provider_max_retries:
            text = f"The provider could not take the task after {attempt} tries: {message}"
            await self._transition(claim, policy.failed("INTERNAL", text, now), claims.WAITING)
            return
        delay = policy.backoff(attempt, retry_after=retry_after, rand=self.rand)
        await self._release(claim, {"attempts": attempt, "started_at": None, "run_at": now + delay})

    # -- poll -----------------------------------------------------------------------------
    async def _polls(self) -> bool:
        if self.renders is not None:
            return await self._recover_renders()
        interval = self.settings.provider_poll_interval
        taken = await self.db.write(
            lambda conn: claims.claim_due(
                conn,
                self.rt,
                kind="poll",
                provider=self.provider_name,
                owner=self.ident,
                limit=self.batch * POLL_BATCH_FACTOR,
                lease=interval,
                next_run_in=interval,
            )
        )
        if not taken:
            return False
        outcomes = await asyncio.gather(*(self._poll_one(claim) for claim in taken))
        await self._transition_many([item for item in outcomes if item is not None])
        return True

    async def _poll_one(self, claim: Any) -> tuple[Any, policy.Change] | None:
        assert self.provider is not None
        now = self.rt.now()
        if policy.timed_out(claim.started_at, now, self.settings.task_timeout):
            text = f"The provider did not finish the task within {self.settings.task_timeout:g} seconds."
            return claim, policy.failed("INTERNAL", text, now, cancel_pending=True, run_at=now)
        try:
            seen = await self.provider.poll(claim.provider_task_id, age=now - (claim.started_at or now))
        except base.UnknownTask as exc:
            return claim, policy.failed("INTERNAL", f"The provider lost the task: {exc.message}", now)
        except base.ProviderError as exc:
            retry_after = getattr(exc, "retry_after", None)
            log.info("poll of %s failed, polling again later: %s", claim.id, exc.message)
            if retry_after is not None and retry_after > self.settings.provider_poll_interval:
                return claim, policy.Change({"run_at": now + retry_after})
            return None
        change = policy.poll_change(
            claim.status, claim.progress, claim.last_progress_event_at, seen, now, claim.estimated_credits
        )
        if change is not None and change.values.get("status") == "SUCCEEDED" and seen.output:
            change = await self._with_rehosted(claim, change, list(seen.output))
        return (claim, change) if change is not None else None

    async def _with_rehosted(self, claim: Any, change: policy.Change, urls: list[str]) -> policy.Change:
        """Copy the outputs into storage when configured; on failure keep the provider's
        URLs (they work for a day or two) rather than failing a finished task."""
        try:
            keys = await media.rehost(
                self.db, self.rt, self.http, account_id=claim.account_id, task_id=claim.id, urls=urls
            )
        except media.MediaError as exc:
            log.warning(
                "re-hosting the output of %s failed, keeping the provider's URLs: %s", claim.id, exc.message
            )
            return change
        if not keys:
            return change
        return dataclasses.replace(change, values={**change.values, "output_keys": keys})

    # -- local renders ----------------------------------------------------------------------
    async def _recover_renders(self) -> bool:
        """Render again the tasks whose worker lost its lease mid-render."""
        limit = min(self.batch, self.renders.room)
        if limit <= 0:
            return False
        lease = self.settings.worker_lease_seconds
        taken = await self.db.write(
            lambda conn: claims.claim_due(
                conn,
                self.rt,
                kind="poll",
                provider="local",
                owner=self.ident,
                limit=limit,
                lease=lease,
                next_run_in=lease,
            )
        )
        for claim in taken:
            log.info("rendering %s again: its previous worker lost the lease", claim.id)
            self.renders.start(claim)
        return bool(taken)

    # -- shutdown ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop claiming; give renders ``CALLBOARD_WORKER_GRACE_SECONDS`` to finish, then stop
        them and release their leases so another worker renders them at once."""
        self._closing = True
        if self.renders is not None:
            await self.renders.shutdown(self.settings.worker_grace_seconds)
            await self.renders.engine.aclose()
        for client in self._owned:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._owned.clear()
        for session in self._sessions:
            await session.close()
        self._sessions.clear()
