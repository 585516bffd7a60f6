"""Nothing lost: real ``callboard worker`` processes killed with SIGKILL.

* A worker killed mid-delivery (the receiver has the request, no answer yet): a new
  worker delivers the same event again with the same ``webhook-id`` once the lease runs
  out, and both requests verify with ``standardwebhooks``.
* A process killed inside the unit of work, before its commit, leaves neither the
  state change nor its event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import accounts, runtime, schema, tasks, taskspec
from service import models as m
from service import settings as settings_mod
from service.db import Database
from tests.integration.test_webhook_delivery import BODY, Receiver
from tests.support import live_server

CLI = [sys.executable, "-m", "service.cli"]
pytestmark = pytest.mark.timeout_sensitive


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env.update(
        {
            "CALLBOARD_DATA_DIR": str(tmp_path / "data"),
            "CALLBOARD_SECRET_KEY": "e2e-secret-key-0123456789",
            "CALLBOARD_ALLOW_PRIVATE_TARGETS": "127.0.0.1",
            "CALLBOARD_WORKER_POLL_INTERVAL": "0.1",
            "CALLBOARD_WORKER_LEASE_SECONDS": "1",
            "CALLBOARD_WEBHOOK_TIMEOUT": "2",  # the delivery lease is twice this
            "CALLBOARD_LOG_LEVEL": "warning",
        }
    )
    return env


def _prepare(env: dict[str, str], reply_url: str) -> tuple[str, str, str]:
    """A migrated database holding one task that just turned SUCCEEDED: (db url, task id, reply secret)."""
    settings = settings_mod.load(env)
    schema.upgrade(settings.database_url)
    rt = runtime.build(settings)
    db = Database(settings.database_url)
    try:

        def unit(conn: Any) -> tuple[str, str | None]:
            account = accounts.create_account(conn, "crash", rt.now())
            spec = taskspec.parse(
                {**BODY, "replyUrl": reply_url, "webhookEvents": ["task.succeeded"]}, allow=rt.allow
            )
            row, secret, _ = tasks.create(
                conn, rt, account=account, spec=spec, provider="local", estimated_credits=1.0
            )
            assert tasks.transition(
                conn,
                rt,
                row.id,
                expected=("PENDING",),
                values={"status": "SUCCEEDED", "cost_credits": 5, "finished_at": rt.now(), "run_at": None},
                event="task.succeeded",
            )
            return row.id, secret

        task_id, secret = db.write_sync(unit)
    finally:
        db.close()
    assert secret is not None
    return settings.database_url, task_id, secret


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _delivery_status(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(m.deliveries.c.status)).scalar_one_or_none()
    finally:
        engine.dispose()


def test_worker_killed_mid_delivery_is_redelivered_with_the_same_webhook_id(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.answer(200, delay=5.0)  # the first worker is killed before this answer
    with live_server(receiver.app) as base:
        env = _env(tmp_path)
        db_url, task_id, secret = _prepare(env, f"{base}/callback")
        log = (tmp_path / "workers.log").open("wb")
        first = subprocess.Popen(CLI + ["worker"], env=env, stdout=log, stderr=log)
        try:
            _wait(lambda: len(receiver.requests) == 1, "the first attempt")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        assert _delivery_status(db_url) == "pending"
        second = subprocess.Popen(CLI + ["worker"], env=env, stdout=log, stderr=log)
        try:
            _wait(lambda: _delivery_status(db_url) == "succeeded", "the redelivery")
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
            log.close()
    assert len(receiver.requests) == 2
    killed, redelivered = receiver.requests
    assert killed["headers"]["webhook-id"] == redelivered["headers"]["webhook-id"]
    assert killed["body"] == redelivered["body"]
    for req in receiver.requests:
        payload = receiver.verify(secret, req)
        assert payload["type"] == "task.succeeded" and payload["data"]["id"] == task_id


def test_a_process_killed_before_its_commit_leaves_no_event(tmp_path: Path) -> None:
    env = _env(tmp_path)
    db_url, task_id, _ = _prepare(env, "https://hooks.example.com/cb")
    script = textwrap.dedent(
        f"""
        import os, signal
        from service import runtime, settings, tasks
        from service.db import Database
        s = settings.load()
        rt = runtime.build(s)
        db = Database(s.database_url)
        def unit(conn):
            tasks.transition(conn, rt, {task_id!r}, expected=("SUCCEEDED",),
                             values={{"status": "FAILED"}}, event="task.failed")
            os.kill(os.getpid(), signal.SIGKILL)
        db.write_sync(unit)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            types = [r.type for r in conn.execute(sa.select(m.events.c.type).order_by(m.events.c.sequence))]
            status = conn.execute(sa.select(m.tasks.c.status)).scalar_one()
            count = conn.execute(sa.select(sa.func.count()).select_from(m.deliveries)).scalar_one()
    finally:
        engine.dispose()
    assert types == ["task.created", "task.succeeded"] and status == "SUCCEEDED" and count == 1
