"""The delivery job: the worker's loop claims due deliveries, this sends them, signed.

``run_once`` claims a batch (one transaction) and starts one request per claimed
delivery on a shared aiohttp session (keep-alive per endpoint, SSRF-guarded resolver,
no redirects, connect and total timeouts). Finished attempts are written back in
batches — whatever finished while the previous batch was committing goes in the next
one — so the worker loop itself never waits on a slow receiver.

Durability: a claim is a lease. If this process dies mid-request, or before a result
is committed, the lease expires and another worker sends the same delivery again with
the same ``webhook-id``. On SIGTERM (``aclose``) no more claims are made, in-flight
requests get the grace period, and leases of requests still unfinished are released
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from service import netguard, outbound
from service.db import Database
from service.runtime import Runtime
from service.webhooks import policy, queue, signing

log = logging.getLogger(__name__)
EXCERPT_BYTES = 20 * 1024
IDLE_WAIT = 0.1  # drain mode: how long one round waits for an in-flight request


def schedule_from(rt: Runtime) -> policy.Schedule:
    s = rt.settings
    return policy.Schedule(
        delays=s.webhook_schedule,
        jitter=s.webhook_jitter,
        floor=s.webhook_throttle_floor,
        max_retry_after=s.webhook_max_retry_after,
    )


async def _read_excerpt(resp: aiohttp.ClientResponse) -> str:
    """At most 20 KB of the response body: a huge answer costs nothing more."""
    buf = bytearray()
    while len(buf) < EXCERPT_BYTES:
        chunk = await resp.content.read(EXCERPT_BYTES - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace")


async def send(
    session: aiohttp.ClientSession,
    claimed: queue.Claimed,
    *,
    now: float,
    allow: netguard.Allowlist,
    checked: dict[str, str | None] | None = None,
) -> queue.Result:
    """One signed attempt. Never raises for network trouble: the result says what happened.

    ``checked`` caches the literal-URL verdict per URL (a pure function of the URL and
    the allowlist); the resolved address is still checked on every new connection.
    """
    timestamp = int(now)
    keys = [signing.secret_key(secret) for secret in claimed.secrets]
    headers = signing.headers(keys, claimed.id, timestamp, claimed.body)
    started = time.perf_counter()

    def failed(error_class: str, error: str) -> queue.Result:
        return queue.Result(
            claimed=claimed,
            started_at=now,
            latency_ms=(time.perf_counter() - started) * 1000,
            error_class=error_class,
            error=error,
        )

    verdict = checked.get(claimed.url, "") if checked is not None else ""
    if verdict == "":
        try:
            outbound.check_destination(claimed.url, allow)
            verdict = None
        except netguard.UrlRejected as exc:
            verdict = str(exc)
        if checked is not None:
            if len(checked) > 10_000:
                checked.clear()
            checked[claimed.url] = verdict
    if verdict is not None:
        return failed("blocked", f"destination refused: {verdict}")
    try:
        async with session.post(
            claimed.url, data=claimed.body, headers=headers, allow_redirects=False
        ) as resp:
            excerpt = await _read_excerpt(resp)
            status = resp.status
            retry_after = resp.headers.get("Retry-After")
    except outbound.BlockedDestination as exc:
        return failed("blocked", f"destination refused: {exc}")
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return failed("timeout", "no complete answer within the timeout")
    except aiohttp.ClientConnectorError as exc:
        return failed("connection", f"could not connect: {exc.os_error or exc}")
    except aiohttp.ClientError as exc:
        return failed("protocol", f"{type(exc).__name__}: {exc}")
    latency = (time.perf_counter() - started) * 1000
    error_class = None
    error = None
    if 300 <= status < 400:
        error_class, error = "redirect", f"HTTP {status} (redirects are not followed)"
    elif not 200 <= status < 300:
        error_class = "http_status"
    return queue.Result(
        claimed=claimed,
        started_at=now,
        status_code=status,
        latency_ms=latency,
        error_class=error_class,
        error=error,
        response_body=excerpt,
        retry_after=retry_after,
    )


class DeliveryJob:
    """The worker job that sends webhooks (``Worker.build`` adds it)."""

    name = "deliveries"

    def __init__(
        self,
        db: Database,
        rt: Runtime,
        *,
        ident: str,
        rand: Callable[[], float] = random.random,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        settings = rt.settings
        self.db = db
        self.rt = rt
        self.ident = ident
        self.rand = rand
        self.schedule = schedule_from(rt)
        self.batch = settings.worker_batch_size
        self.max_in_flight = settings.webhook_max_in_flight
        # a lease shorter than a request would let a second worker send while we wait
        self.lease_seconds = max(settings.worker_lease_seconds, 2 * settings.webhook_timeout)
        self._session_factory = session_factory or (
            lambda: outbound.session(
                allow=rt.allow,
                connect_timeout=settings.webhook_connect_timeout,
                total_timeout=settings.webhook_timeout,
                limit=self.max_in_flight,
            )
        )
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[asyncio.Task[None], queue.Claimed] = {}
        self._results: list[queue.Result] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._closing = False
        # claim again only when recorded results freed endpoint capacity, when nothing
        # is in flight, or after IDLE_WAIT (new work for other endpoints)
        self._freed = True
        self._last_claim = 0.0
        self._checked: dict[str, str | None] = {}

    # -- the worker's entry points ----------------------------------------------------
    async def run_once(self) -> bool:
        """Claim and start what is due; True while there is work (drain mode relies on it).

        When nothing new is due but requests are still in flight, wait a moment for one
        to finish rather than let the caller spin.
        """
        if self._session is None:
            self._session = self._session_factory()
        claimed: list[queue.Claimed] = []
        room = self.max_in_flight - len(self._inflight)
        due = not self._inflight or self._freed or time.monotonic() - self._last_claim >= IDLE_WAIT
        if room > 0 and due and not self._closing:
            self._freed = False
            self._last_claim = time.monotonic()
            now = self.rt.now()
            limit = min(room, self.batch)
            claimed = await self.db.write(
                lambda conn: queue.claim(
                    conn, now=now, owner=self.ident, limit=limit, lease_seconds=self.lease_seconds
                )
            )
            for item in claimed:
                task = asyncio.create_task(self._deliver(item), name=f"webhook-{item.id}")
                self._inflight[task] = item
                task.add_done_callback(self._inflight.pop)
        if claimed:
            return True
        pending: set[asyncio.Future[Any]] = set(self._inflight)
        if self._flush_task is not None and not self._flush_task.done():
            pending.add(self._flush_task)
        if not pending:
            return False
        await asyncio.wait(pending, timeout=IDLE_WAIT, return_when=asyncio.FIRST_COMPLETED)
        return True

    async def aclose(self) -> None:
        """Stop claiming; give in-flight requests the grace period; release the rest."""
        self._closing = True
        grace = getattr(self.rt.settings, "worker_grace_seconds", 30.0)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        leftovers = list(self._inflight.values())
        for task in list(self._inflight):
            task.cancel()
        for task in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drain_results()
        if leftovers:
            try:
                await self.db.write(lambda conn: queue.release(conn, leftovers))
            except Exception as exc:  # the leases expire on their own
                log.warning("could not release %d webhook leases: %s", len(leftovers), exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- sending and recording --------------------------------------------------------
    async def _deliver(self, claimed: queue.Claimed) -> None:
        assert self._session is not None
        result = await send(
            self._session, claimed, now=self.rt.now(), allow=self.rt.allow, checked=self._checked
        )
        self._results.append(result)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush(), name="webhook-results")

    async def _drain_results(self) -> None:
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task
        await self._flush()

    async def _flush(self) -> None:
        """Write every finished attempt in one transaction; repeat while more arrive."""
        while self._results:
            batch, self._results = self._results, []
            now = self.rt.now()
            try:
                await self.db.write(
                    lambda conn, batch=batch, now=now: queue.complete(
                        conn,
                        batch,
                        now=now,
                        schedule=self.schedule,
                        disable_after=self.rt.settings.webhook_disable_after,
                        rand=self.rand,
                    )
                )
            except Exception as exc:
                # the leases run out and the deliveries are sent again (same webhook-id)
                log.warning("could not record %d webhook attempts: %s", len(batch), exc)
            self._freed = True
