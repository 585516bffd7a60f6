"""Webhook delivery end to end in one process: the outbox, the delivery job, a real
loopback receiver recording raw bytes, and ``standardwebhooks`` as the oracle.

The clock is fake (moved by hand) but starts at the real time, because the oracle
checks ``webhook-timestamp`` against the wall clock (5 minutes of tolerance).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import sqlalchemy as sa
import standardwebhooks
from aiohttp.abc import AbstractResolver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import events, netguard, outbound, runtime, tasks, taskspec
from service import models as m
from service.db import Database
from service.webhooks import delivery, endpoints
from tests.conftest import AccountFactory
from tests.support import FakeClock, live_server

BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/character.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/reference.mp4"},
}


class Receiver:
    """A loopback webhook receiver: records every request's raw body and headers and
    answers from a script (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], bytes, float]] = []
        self.lock = threading.Lock()
        self.url = ""
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "GET"])])

    def answer(
        self, status: int, *, headers: dict[str, str] | None = None, body: bytes = b"", delay: float = 0.0
    ) -> None:
        with self.lock:
            self.script.append((status, headers or {}, body, delay))

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            self.requests.append(
                {
                    "path": request.url.path,
                    "method": request.method,
                    "headers": dict(request.headers),
                    "body": raw,
                }
            )
            status, headers, body, delay = self.script.pop(0) if self.script else (200, {}, b"ok", 0.0)
        if delay:
            await asyncio.sleep(delay)
        return Response(body, status_code=status, headers=headers)

    def verify(self, secret: str, req: dict[str, Any]) -> Any:
        return standardwebhooks.Webhook(secret).verify(req["body"], req["headers"])

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with live_server(rec.app) as url:
        rec.url = url
        yield rec


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def account(make_account: AccountFactory) -> dict[str, Any]:
    return make_account("alice")[0]


def build_rt(rt: runtime.Runtime, **changes: Any) -> runtime.Runtime:
    return runtime.Runtime(
        settings=rt.settings.replace(**changes), clock=rt.clock, links=rt.links, allow=rt.allow
    )


def make_task(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], **extra: Any
) -> tuple[Any, str | None]:
    spec = taskspec.parse({**BODY, **extra}, allow=rt.allow)
    row, secret, _ = db.write_sync(
        lambda conn: tasks.create(
            conn, rt, account=account, spec=spec, provider="local", estimated_credits=1.0
        )
    )
    return row, secret


def succeed(db: Database, rt: runtime.Runtime, task_id: str) -> None:
    assert db.write_sync(
        lambda conn: tasks.transition(
            conn,
            rt,
            task_id,
            expected=("PENDING", "THROTTLED", "RUNNING"),
            values={
                "status": "SUCCEEDED",
                "cost_credits": 15,
                "finished_at": rt.now(),
                "upstream_output": ["https://cdn.example.com/out.mp4"],
                "run_at": None,
            },
            event="task.succeeded",
        )
    )


def subscribe(db: Database, rt: runtime.Runtime, account: dict[str, Any], url: str, **values: Any) -> Any:
    return db.write_sync(
        lambda conn: endpoints.create(
            conn, account_id=account["id"], kind="subscription", values={"url": url, **values}, now=rt.now()
        )
    )


async def drain(job: delivery.DeliveryJob, rounds: int = 200) -> None:
    for _ in range(rounds):
        if not await job.run_once():
            return
    raise AssertionError("the delivery job did not become idle")


@contextlib.asynccontextmanager
async def running(db: Database, rt: runtime.Runtime, **kw: Any) -> Any:
    job = delivery.DeliveryJob(db, rt, ident="test-worker", rand=lambda: 0.5, **kw)
    try:
        yield job
    finally:
        await job.aclose()


def deliveries(db: Database) -> list[Any]:
    return db.read_sync(
        lambda conn: conn.execute(sa.select(m.deliveries).order_by(m.deliveries.c.created_at)).all()
    )


def attempts(db: Database, delivery_id: str) -> list[Any]:
    return db.read_sync(
        lambda conn: conn.execute(
            sa.select(m.attempts).where(m.attempts.c.delivery_id == delivery_id).order_by(m.attempts.c.number)
        ).all()
    )


# -- the replyUrl callback ----------------------------------------------------------------


def test_reply_url_receives_signed_events_echoing_reply_ref_with_increasing_sequence(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    ref = 'order "42" \u2603 <&>'
    task, secret = make_task(db, rt, account, replyUrl=f"{receiver.url}/cb", replyRef=ref)
    assert secret is not None

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            succeed(db, rt, task.id)
            await drain(job)

    asyncio.run(scenario())
    assert [b["type"] for b in receiver.bodies()] == ["task.created", "task.succeeded"]
    for req in receiver.requests:
        payload = receiver.verify(secret, req)
        assert payload["data"]["replyRef"] == ref
        assert req["headers"]["content-type"] == "application/json"
        assert req["headers"]["user-agent"].startswith("Callboard-Webhooks/")
        assert ('"replyRef":' + orjson.dumps(ref).decode()).encode() in req["body"]
    created, finished = receiver.bodies()
    assert created["data"]["sequence"] < finished["data"]["sequence"]
    assert finished["data"]["output"] == ["https://cdn.example.com/out.mp4"]
    assert finished["data"]["status"] == "SUCCEEDED" and finished["data"]["id"] == task.id
    assert all(d.status == "succeeded" for d in deliveries(db))


def test_webhook_events_filter_still_lets_terminal_events_through(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    task, _ = make_task(db, rt, account, replyUrl=f"{receiver.url}/cb", webhookEvents=["task.running"])

    async def scenario() -> None:
        async with running(db, rt) as job:
            succeed(db, rt, task.id)
            await drain(job)

    asyncio.run(scenario())
    assert [b["type"] for b in receiver.bodies()] == ["task.succeeded"]


def test_the_event_body_column_holds_exactly_the_bytes_sent(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    make_task(db, rt, account, replyUrl=f"{receiver.url}/cb")

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    stored = db.read_sync(lambda conn: conn.execute(sa.select(m.events.c.body)).scalar_one())
    assert receiver.requests[0]["body"] == stored.encode()


# -- retries ------------------------------------------------------------------------------


def test_retries_keep_the_webhook_id_and_every_attempt_verifies(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    rt = build_rt(rt, webhook_schedule=(0, 5, 10))
    ep = subscribe(db, rt, account, f"{receiver.url}/sub", event_types=["task.created"])
    receiver.answer(500, body=b"boom")
    receiver.answer(400)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            assert len(receiver.requests) == 1
            row = deliveries(db)[0]
            assert row.status == "pending" and row.next_attempt_at == pytest.approx(clock.now() + 5)
            clock.advance(4)
            await drain(job)
            assert len(receiver.requests) == 1  # not due yet
            clock.advance(1)
            await drain(job)
            assert len(receiver.requests) == 2
            clock.advance(10)
            await drain(job)

    asyncio.run(scenario())
    assert len(receiver.requests) == 3
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    (row,) = deliveries(db)
    assert ids == {row.id}
    for req in receiver.requests:
        receiver.verify(ep.secret, req)
    assert row.status == "succeeded" and row.attempts == 3
    log = attempts(db, row.id)
    assert [a.status_code for a in log] == [500, 400, 200]
    assert [a.trigger for a in log] == ["scheduled"] * 3
    assert log[0].response_body == "boom" and log[0].error_class == "http_status"
    assert log[0].next_attempt_at is not None and log[2].next_attempt_at is None
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in log)


def test_schedule_exhaustion_fails_the_delivery(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    rt = build_rt(rt, webhook_schedule=(0, 1))
    subscribe(db, rt, account, f"{receiver.url}/sub")
    receiver.answer(500)
    receiver.answer(500)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            clock.advance(2)
            await drain(job)
            clock.advance(3600)
            await drain(job)

    asyncio.run(scenario())
    (row,) = deliveries(db)
    assert row.status == "failed" and row.attempts == 2 and row.next_attempt_at is None
    assert row.last_error == "HTTP 500"


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {}, 60.0),  # throttling waits at least the floor
        (503, {}, 60.0),
        (503, {"Retry-After": "120"}, 120.0),  # Retry-After honoured
        (500, {"Retry-After": "30"}, 30.0),
        (500, {"Retry-After": "999999999"}, 86400.0),  # ...clamped
        (500, {}, 5.0),  # the plain schedule
    ],
)
def test_throttling_floor_and_retry_after_set_the_next_attempt(
    db: Database,
    rt: runtime.Runtime,
    clock: FakeClock,
    account: dict[str, Any],
    receiver: Receiver,
    status: int,
    headers: dict[str, str],
    wait: float,
) -> None:
    subscribe(db, rt, account, f"{receiver.url}/sub")
    receiver.answer(status, headers=headers)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    (row,) = deliveries(db)
    assert row.status == "pending"
    assert row.next_attempt_at == pytest.approx(clock.now() + wait)


def test_a_timeout_is_a_failure_that_waits_the_floor(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    rt = build_rt(rt, webhook_timeout=0.3)
    subscribe(db, rt, account, f"{receiver.url}/slow")
    receiver.answer(200, delay=2.0)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    (row,) = deliveries(db)
    (att,) = attempts(db, row.id)
    assert att.error_class == "timeout" and att.status_code is None
    assert row.next_attempt_at == pytest.approx(clock.now() + 60)


def test_redirects_are_failures_and_never_followed(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    subscribe(db, rt, account, f"{receiver.url}/moved")
    receiver.answer(302, headers={"Location": f"{receiver.url}/elsewhere"})
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    assert [r["path"] for r in receiver.requests] == ["/moved"]
    (row,) = deliveries(db)
    (att,) = attempts(db, row.id)
    assert row.status == "pending" and att.status_code == 302 and att.error_class == "redirect"


def test_response_excerpt_is_truncated_to_20_kb(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    subscribe(db, rt, account, f"{receiver.url}/big")
    receiver.answer(500, body=b"x" * (200 * 1024))
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    (att,) = attempts(db, deliveries(db)[0].id)
    assert len(att.response_body) == 20 * 1024


# -- 410 Gone ---------------------------------------------------------------------------


def test_410_disables_a_subscription_and_records_why(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    gone = subscribe(db, rt, account, f"{receiver.url}/gone")
    watcher = subscribe(db, rt, account, f"{receiver.url}/watch", event_types=["webhook.disabled"])
    receiver.answer(410)
    task, _ = make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            succeed(db, rt, task.id)  # no longer goes to the disabled endpoint
            await drain(job)

    asyncio.run(scenario())
    ep = db.read_sync(lambda conn: endpoints.get(conn, account["id"], gone.id))
    assert not ep.enabled and "410" in ep.disabled_reason
    paths = [r["path"] for r in receiver.requests]
    assert paths == ["/gone", "/watch"]
    notice = receiver.verify(watcher.secret, receiver.requests[1])
    assert notice["type"] == "webhook.disabled" and notice["data"]["endpointId"] == gone.id


def test_410_deletes_a_rest_hook(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    hook = db.write_sync(
        lambda conn: endpoints.create_hook(
            conn,
            account_id=account["id"],
            body={"target_url": f"{receiver.url}/zap", "event": "task.created"},
            allow=rt.allow,
            now=rt.now(),
        )
    )
    receiver.answer(410)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            make_task(db, rt, account)  # the hook is gone: nothing more is queued for it
            await drain(job)

    asyncio.run(scenario())
    row = db.read_sync(
        lambda conn: conn.execute(sa.select(m.endpoints).where(m.endpoints.c.id == hook.id)).one()
    )
    assert row.deleted_at is not None and "410" in row.disabled_reason
    assert len(receiver.requests) == 1
    assert [d.status for d in deliveries(db)] == ["failed"]


def test_410_stops_a_reply_url_for_that_task(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    task, _ = make_task(db, rt, account, replyUrl=f"{receiver.url}/cb")
    receiver.answer(410)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            succeed(db, rt, task.id)
            await drain(job)

    asyncio.run(scenario())
    assert len(receiver.requests) == 1
    assert [d.status for d in deliveries(db)] == ["failed"]  # no delivery row for the later event


# -- endpoint limits and health ----------------------------------------------------------


def test_rate_limit_holds_deliveries_back_without_using_attempts(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    subscribe(db, rt, account, f"{receiver.url}/limited", rate_limit=2)
    for _ in range(6):
        make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            assert len(receiver.requests) == 2
            held = [d for d in deliveries(db) if d.status == "pending"]
            assert len(held) == 4 and all(d.attempts == 0 for d in held)
            assert sorted(d.next_attempt_at - clock.now() for d in held) == pytest.approx(
                [0.5, 1.0, 1.5, 2.0]
            )
            clock.advance(0.5)
            await drain(job)
            assert len(receiver.requests) == 3
            clock.advance(10)
            await drain(job)  # a long pause does not bank a bigger burst
            assert len(receiver.requests) == 5
            clock.advance(0.5)
            await drain(job)

    asyncio.run(scenario())
    assert len(receiver.requests) == 6
    assert all(d.status == "succeeded" and d.attempts == 1 for d in deliveries(db))


def test_concurrency_cap_limits_requests_in_flight(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    subscribe(db, rt, account, f"{receiver.url}/capped", max_concurrency=1)
    for _ in range(3):
        make_task(db, rt, account)
    for _ in range(3):
        receiver.answer(200, delay=0.2)

    async def scenario() -> None:
        async with running(db, rt) as job:
            assert await job.run_once()
            leased = [d for d in deliveries(db) if d.lease_owner is not None]
            assert len(leased) == 1
            for _ in range(6):
                await drain(job)
                clock.advance(1.0)

    asyncio.run(scenario())
    assert len(receiver.requests) == 3
    assert all(d.status == "succeeded" and d.attempts == 1 for d in deliveries(db))


def test_endpoint_failing_five_days_is_disabled_and_a_success_resets_the_clock(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    rt = build_rt(rt, webhook_schedule=(0,))  # one attempt each, to keep the test short
    ep = subscribe(db, rt, account, f"{receiver.url}/flaky", event_types=["task.created"])

    def health() -> Any:
        return db.read_sync(lambda conn: endpoints.get(conn, account["id"], ep.id))

    def new_event() -> None:
        make_task(db, rt, account)

    async def round_trip(job: delivery.DeliveryJob, status: int) -> None:
        receiver.answer(status)
        new_event()
        await drain(job)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await round_trip(job, 500)
            started = health().failing_since
            assert started == pytest.approx(clock.now())
            clock.advance(3 * 86400)
            await round_trip(job, 200)  # any success resets the clock
            assert health().failing_since is None and health().last_success_at is not None
            await round_trip(job, 500)
            clock.advance(5 * 86400 - 60)
            await round_trip(job, 500)
            assert health().enabled
            clock.advance(120)
            await round_trip(job, 500)
            assert not health().enabled
            assert "no successful delivery for 5 days" in health().disabled_reason
            clock.advance(60)
            new_event()
            await drain(job)

    asyncio.run(scenario())
    assert len(receiver.requests) == 5  # nothing goes to a disabled endpoint
    feed = db.read_sync(
        lambda conn: conn.execute(
            sa.select(m.events.c.type).where(m.events.c.type == "webhook.disabled")
        ).all()
    )
    assert len(feed) == 1


# -- secrets, replay, recovery ------------------------------------------------------------


def test_after_rotation_both_secrets_verify_for_24_hours(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    ep = subscribe(db, rt, account, f"{receiver.url}/rot")
    rotated = db.write_sync(
        lambda conn: endpoints.rotate_secret(conn, account_id=account["id"], endpoint_id=ep.id, now=rt.now())
    )
    assert rotated.secret != ep.secret
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    (req,) = receiver.requests
    receiver.verify(ep.secret, req)
    receiver.verify(rotated.secret, req)
    assert len(req["headers"]["webhook-signature"].split(" ")) == 2
    assert rotated.previous_secret_expires_at == pytest.approx(clock.now() + 86400)


def test_manual_replay_resends_with_the_same_webhook_id_marked_manual(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    from service.webhooks import history

    ep = subscribe(db, rt, account, f"{receiver.url}/replay")
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            (row,) = deliveries(db)
            db.write_sync(lambda conn: history.retry(conn, account["id"], row.id, rt.now()))
            await drain(job)

    asyncio.run(scenario())
    first, again = receiver.requests
    assert first["headers"]["webhook-id"] == again["headers"]["webhook-id"]
    assert first["body"] == again["body"]
    receiver.verify(ep.secret, again)
    (row,) = deliveries(db)
    assert [a.trigger for a in attempts(db, row.id)] == ["scheduled", "manual"]


def test_recover_resends_failed_deliveries_since_a_time(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    from service.webhooks import history

    rt = build_rt(rt, webhook_schedule=(0,))
    ep = subscribe(db, rt, account, f"{receiver.url}/down")
    receiver.answer(500)
    make_task(db, rt, account)  # failed before "since"
    clock.advance(60)
    since = clock.now()
    receiver.answer(500)
    receiver.answer(500)
    make_task(db, rt, account)
    make_task(db, rt, account)

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            assert {d.status for d in deliveries(db)} == {"failed"}
            count, more = db.write_sync(
                lambda conn: history.recover(conn, account["id"], ep.id, since, rt.now())
            )
            assert (count, more) == (2, False)
            await drain(job)

    asyncio.run(scenario())
    assert sorted(d.status for d in deliveries(db)) == ["failed", "succeeded", "succeeded"]
    assert len(receiver.requests) == 5
    for req in receiver.requests:
        receiver.verify(ep.secret, req)


def test_test_event_goes_only_to_that_endpoint_and_verifies(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    ep = subscribe(db, rt, account, f"{receiver.url}/one")
    subscribe(db, rt, account, f"{receiver.url}/other")
    db.write_sync(
        lambda conn: endpoints.send_test(conn, account_id=account["id"], endpoint_id=ep.id, now=rt.now())
    )

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    (req,) = receiver.requests
    assert req["path"] == "/one"
    payload = receiver.verify(ep.secret, req)
    assert payload["type"] == "webhook.test" and payload["data"]["test"] is True


# -- safety and durability ---------------------------------------------------------------


class _LoopbackDNS(AbstractResolver):
    """DNS that answers 127.0.0.1 for every name (a rebinding attack, at the DNS seam)."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


def test_a_destination_that_resolves_to_a_private_address_is_refused_at_send_time(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    strict = runtime.Runtime(
        settings=rt.settings.replace(allow_private_targets=()),
        clock=rt.clock,
        links=rt.links,
        allow=netguard.Allowlist(),
    )
    port = receiver.url.rsplit(":", 1)[1]
    # accepted while its DNS pointed elsewhere, now resolving to loopback
    subscribe(db, rt, account, f"http://hooks.example.com:{port}/x")
    # stored before the policy changed: a literal private address is refused before connecting
    subscribe(db, rt, account, f"http://127.0.0.1:{port}/y")
    make_task(db, rt, account)

    def guarded_session() -> aiohttp.ClientSession:
        resolver = outbound.GuardedResolver(strict.allow)
        resolver._inner = _LoopbackDNS()  # type: ignore[assignment]
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))

    async def scenario() -> None:
        async with running(db, strict, session_factory=guarded_session) as job:
            await drain(job)

    asyncio.run(scenario())
    assert receiver.requests == []
    rows = deliveries(db)
    assert len(rows) == 2
    for row in rows:
        (att,) = attempts(db, row.id)
        assert att.error_class == "blocked" and row.status == "pending"
        assert "loopback" in row.last_error


def test_crash_before_commit_leaves_no_event_and_no_delivery(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    task, _ = make_task(db, rt, account, replyUrl=f"{receiver.url}/cb")
    before = len(deliveries(db))

    def crashing_unit(conn: Any) -> None:
        assert tasks.transition(
            conn, rt, task.id, expected=("PENDING",), values={"status": "CANCELLED"}, event="task.cancelled"
        )
        raise RuntimeError("process died before commit")

    with pytest.raises(RuntimeError):
        db.write_sync(crashing_unit)
    assert len(deliveries(db)) == before
    types = db.read_sync(lambda conn: [r.type for r in conn.execute(sa.select(m.events.c.type))])
    assert types == ["task.created"]


def test_a_lost_lease_is_resent_with_the_same_id_and_the_stale_result_is_dropped(
    db: Database, rt: runtime.Runtime, clock: FakeClock, account: dict[str, Any], receiver: Receiver
) -> None:
    from service.webhooks import queue

    ep = subscribe(db, rt, account, f"{receiver.url}/lease")
    make_task(db, rt, account)
    stale = db.write_sync(
        lambda conn: queue.claim(conn, now=clock.now(), owner="dead-worker", limit=10, lease_seconds=30)
    )
    assert len(stale) == 1

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)
            assert receiver.requests == []  # still leased by the dead worker
            clock.advance(31)
            await drain(job)

    asyncio.run(scenario())
    (req,) = receiver.requests
    assert req["headers"]["webhook-id"] == stale[0].id
    receiver.verify(ep.secret, req)
    applied = db.write_sync(
        lambda conn: queue.complete(
            conn,
            [queue.Result(claimed=stale[0], started_at=clock.now(), status_code=500)],
            now=clock.now(),
            schedule=delivery.schedule_from(rt),
            disable_after=86400.0,
            rand=lambda: 0.5,
        )
    )
    assert applied == 0
    assert deliveries(db)[0].status == "succeeded"


def test_deliveries_for_a_disabled_endpoint_are_closed_not_sent(
    db: Database, rt: runtime.Runtime, account: dict[str, Any], receiver: Receiver
) -> None:
    ep = subscribe(db, rt, account, f"{receiver.url}/off")
    make_task(db, rt, account)
    db.write_sync(
        lambda conn: endpoints.update(
            conn, account_id=account["id"], endpoint_id=ep.id, values={"enabled": False}, now=rt.now()
        )
    )

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    assert receiver.requests == []
    assert [d.status for d in deliveries(db)] == ["failed"]


def test_secrets_are_never_logged(
    db: Database,
    rt: runtime.Runtime,
    account: dict[str, Any],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    ep = subscribe(db, rt, account, f"{receiver.url}/quiet")
    receiver.answer(500)
    task, secret = make_task(db, rt, account, replyUrl=f"{receiver.url}/cb")

    async def scenario() -> None:
        async with running(db, rt) as job:
            await drain(job)

    asyncio.run(scenario())
    assert receiver.requests
    assert ep.secret not in caplog.text and secret not in caplog.text
    assert events.DELIVERIES_CHANNEL == "deliveries"
