"""A Callboard deployment of real processes for the proof runs.

``callboard serve --no-worker`` (web) and ``callboard worker`` processes on one
database, configured only through ``CALLBOARD_*`` variables, with the ``runway``
provider pointed at the loopback fake upstream. The harness starts, SIGKILLs and
restarts them, submits tasks over HTTP the way a client would (retrying with the same
``Idempotency-Key`` when the web process dies under it), and reads the database to
check what held.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
import standardwebhooks

from service import models as m
from service import settings as settings_mod
from tests.faults import fakes as fakes_mod
from tests.support import ROOT, free_port

CLI = [sys.executable, "-m", "service.cli"]
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL_EVENTS = ("task.succeeded", "task.failed", "task.cancelled")
BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/character.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/reference.mp4"},
}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Cluster:
    """Web and worker processes of one deployment; ``env`` is what they all get."""

    env: dict[str, str]
    log_path: Path
    port: int
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0
    _engine: sa.Engine | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return settings_mod.load(self.env).database_url

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.database_url, pool_pre_ping=True)
        return self._engine

    def run_cli(self, *args: str) -> str:
        proc = subprocess.run(CLI + list(args), env=self.env, cwd=ROOT, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode().strip()

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        try:
            return subprocess.Popen(CLI + list(args), env=self.env, cwd=ROOT, stdout=log, stderr=log)
        finally:
            log.close()

    # -- processes ----------------------------------------------------------------------
    def start_web(self) -> None:
        self.web = self._spawn("serve", "--no-worker", "--port", str(self.port))
        wait_for(self._ready, "the web process to answer /healthz", 60)

    def _ready(self) -> bool:
        assert self.web is not None
        if self.web.poll() is not None:
            raise AssertionError(f"the web process exited with {self.web.returncode}; see {self.log_path}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_workers(self, n: int = 1) -> None:
        while len(self.workers) < n:
            self.workers.append(self._spawn("worker"))

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills += 1
        proc.wait(timeout=30)

    def kill_workers(self, which: list[subprocess.Popen[bytes]] | None = None) -> int:
        victims = list(self.workers) if which is None else which
        for proc in victims:
            self.kill(proc)
            self.workers.remove(proc)
        return len(victims)

    def kill_web(self) -> None:
        if self.web is not None:
            self.kill(self.web)
            self.web = None

    def stop(self) -> None:
        """SIGTERM everything (workers release their leases), SIGKILL what lingers."""
        procs = [p for p in [self.web, *self.workers] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.web, self.workers = None, []
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- the API, as a client ---------------------------------------------------------------
    def create_task(self, key: str, idempotency_key: str, body: dict[str, Any], deadline: float) -> str:
        """POST a create until answered (the web process may be killed and restarted
        meanwhile), always with the same Idempotency-Key; the task id."""
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        while True:
            try:
                resp = httpx.post(
                    f"{self.base}/v1/character_performance", json=body, headers=headers, timeout=10
                )
                if resp.status_code == 200:
                    return str(resp.json()["id"])
                assert resp.status_code in (429, 503) or resp.status_code >= 500, resp.text
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"create {idempotency_key} was never answered")
            time.sleep(0.2)

    def api(self, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.base}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10, **kwargs
        )

    # -- the database, as the judge -----------------------------------------------------------
    def rows(self, query: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def statuses(self) -> dict[str, str]:
        return dict(self.rows(sa.select(m.tasks.c.id, m.tasks.c.status)))

    def state(self) -> str:
        """What is still open, for failure messages."""
        tasks = self.rows(
            sa.select(
                m.tasks.c.id,
                m.tasks.c.status,
                m.tasks.c.run_at,
                m.tasks.c.lease_expires_at,
                m.tasks.c.provider_task_id,
                m.tasks.c.attempts,
            ).where(m.tasks.c.status.not_in(TERMINAL))
        )
        deliveries = self.rows(
            sa.select(
                m.deliveries.c.id,
                m.deliveries.c.status,
                m.deliveries.c.attempts,
                m.deliveries.c.next_attempt_at,
                m.deliveries.c.lease_expires_at,
                m.deliveries.c.last_error,
            ).where(m.deliveries.c.status != "succeeded")
        )
        return f"now={time.time():.1f} open tasks={tasks[:10]} open deliveries={deliveries[:10]}"

    def settle(self, timeout: float) -> None:
        try:
            wait_for(self.all_settled, "every task and delivery to settle", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.state()} (logs: {self.log_path})") from None

    def all_settled(self) -> bool:
        """Every task terminal and every delivery succeeded."""
        with self.engine.connect() as conn:
            open_tasks = conn.execute(
                sa.select(sa.func.count()).select_from(m.tasks).where(m.tasks.c.status.not_in(TERMINAL))
            ).scalar_one()
            open_deliveries = conn.execute(
                sa.select(sa.func.count())
                .select_from(m.deliveries)
                .where(m.deliveries.c.status != "succeeded")
            ).scalar_one()
        return open_tasks == 0 and open_deliveries == 0


@contextlib.contextmanager
def deployment(
    tmp_path: Path, database_url: str | None, fakes: fakes_mod.Fakes, **extra: str
) -> Iterator[Cluster]:
    """A migrated database, an account, and the environment every process gets.

    Fast retries everywhere (leases of 1-2 s, webhook retries within a second), so that
    kill rounds finish in seconds; the upstream's own 5 s poll floor still holds.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env.update(
        {
            "CALLBOARD_DATA_DIR": str(tmp_path / "data"),
            "CALLBOARD_SECRET_KEY": "proof-secret-key-0123456789",
            "CALLBOARD_PROVIDER": "runway",
            "CALLBOARD_RUNWAY_BASE_URL": fakes.upstream_url,
            "CALLBOARD_RUNWAY_API_KEY": "key_upstream_proof",
            "CALLBOARD_ALLOW_PRIVATE_TARGETS": "127.0.0.1",
            "CALLBOARD_REHOST_OUTPUTS": "false",
            "CALLBOARD_RATE_LIMIT": "0",
            "CALLBOARD_WORKER_POLL_INTERVAL": "0.1",
            "CALLBOARD_WORKER_LEASE_SECONDS": "2",
            "CALLBOARD_WORKER_GRACE_SECONDS": "1",
            "CALLBOARD_PROVIDER_TIMEOUT": "2",
            "CALLBOARD_WEBHOOK_TIMEOUT": "1",
            "CALLBOARD_WEBHOOK_SCHEDULE": ",".join(["0"] + ["0.5"] * 30),
            "CALLBOARD_WEBHOOK_JITTER": "0",
            "CALLBOARD_WEBHOOK_THROTTLE_FLOOR": "0.5",
            "CALLBOARD_LOG_LEVEL": "warning",
        }
    )
    if database_url:
        env["CALLBOARD_DATABASE_URL"] = database_url
    env.update(extra)
    cluster = Cluster(env=env, log_path=tmp_path / "processes.log", port=free_port())
    cluster.run_cli("migrate")
    try:
        yield cluster
    finally:
        cluster.stop()


# -- the verdict --------------------------------------------------------------------------------
@dataclass
class Verdict:
    tasks: int
    events: int
    deliveries: int
    requests: int
    duplicates: int  # requests beyond the first for a delivery (the price of at-least-once)


def check_nothing_lost(cluster: Cluster, fakes: fakes_mod.Fakes, secrets: dict[str, str]) -> Verdict:
    """The durability contract, read from the database and the receivers:

    * every task is terminal, with exactly one terminal event;
    * every delivery succeeded, and its receiver got it at least once, every time with
      the same ``webhook-id`` and the exact committed event bytes, signed (verified
      with ``standardwebhooks`` against the endpoint's secret);
    * nothing arrived that does not match a committed delivery (no event that never
      committed was ever sent).
    """
    tasks = cluster.rows(sa.select(m.tasks.c.id, m.tasks.c.status))
    assert tasks and all(t.status in TERMINAL for t in tasks), [t for t in tasks if t.status not in TERMINAL]
    events = {
        r.id: r
        for r in cluster.rows(sa.select(m.events.c.id, m.events.c.task_id, m.events.c.type, m.events.c.body))
    }
    terminal_per_task: dict[str, int] = {}
    for ev in events.values():
        if ev.type in TERMINAL_EVENTS and ev.task_id:
            terminal_per_task[ev.task_id] = terminal_per_task.get(ev.task_id, 0) + 1
    assert all(terminal_per_task.get(t.id) == 1 for t in tasks), "one terminal event per task"
    rows = cluster.rows(
        sa.select(
            m.deliveries.c.id,
            m.deliveries.c.event_id,
            m.deliveries.c.status,
            m.endpoints.c.secret,
            m.endpoints.c.previous_secret,
        ).join(m.endpoints, m.endpoints.c.id == m.deliveries.c.endpoint_id)
    )
    deliveries = {r.id: r for r in rows}
    received: dict[str, list[fakes_mod.Delivery]] = {}
    for req in fakes.snapshot():
        received.setdefault(req.webhook_id, []).append(req)
    unknown = set(received) - set(deliveries)
    assert not unknown, f"{len(unknown)} webhook-ids were delivered that no committed delivery has"
    for d in deliveries.values():
        assert d.status == "succeeded", (d.id, d.status)
        got = received.get(d.id)
        assert got, f"delivery {d.id} ({events[d.event_id].type}) never reached its receiver"
        body = events[d.event_id].body.encode()
        for req in got:
            assert req.body == body, f"delivery {d.id} was sent with other bytes than its event"
        for req in got:
            assert signed_by(d.secret, req), f"delivery {d.id} is not signed with its endpoint's secret"
    for secret in secrets.values():
        assert secret.startswith("whsec_")
    requests = sum(len(v) for v in received.values())
    return Verdict(
        tasks=len(tasks),
        events=len(events),
        deliveries=len(deliveries),
        requests=requests,
        duplicates=requests - len(received),
    )


def signed_by(secret: str, req: fakes_mod.Delivery) -> bool:
    """The ``standardwebhooks`` signature of this request, checked without its 5-minute
    freshness window (long runs judge their early requests at the end)."""
    ts = int(req.headers["webhook-timestamp"])
    expected = standardwebhooks.Webhook(secret).sign(
        req.webhook_id, datetime.datetime.fromtimestamp(ts, tz=datetime.UTC), req.body.decode()
    )
    return expected in req.headers["webhook-signature"].split(" ")


def submit_many(
    cluster: Cluster,
    key: str,
    items: list[tuple[str, dict[str, Any]]],
    *,
    threads: int = 8,
    timeout: float = 90,
) -> dict[str, str]:
    """Create tasks concurrently (idempotency key -> body); idempotency key -> task id."""
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = {ikey: pool.submit(cluster.create_task, key, ikey, body, deadline) for ikey, body in items}
        return {ikey: f.result() for ikey, f in futures.items()}


def body_for(reply_url: str, ref: str) -> dict[str, Any]:
    return {**BODY, "replyUrl": reply_url, "replyRef": ref}


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
