"""The ``runway`` provider end to end against a real upstream: a second Callboard on
loopback (Callboard speaks Runway's API, so it is a genuine upstream for itself).

The upstream renders with its local engine on the system clock; the downstream runner
runs on a fake clock that the test moves 5 s per real second, so polls stay 5 s apart
in the downstream's eyes without the test waiting for them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from service import accounts, outbound, runner, runtime, storage
from service.api.app import create_app
from service.db import Database
from service.providers import runway
from tests.integration import runner_support as rs
from tests.support import MEDIA, free_port, live_server

pytestmark = pytest.mark.skipif(not (MEDIA / "character_photo.jpg").exists(), reason="shared media missing")


@pytest.fixture
def upstream(settings, sqlite_template: Path, tmp_path: Path):
    """A second Callboard (its own SQLite database and data directory), serving with an
    embedded local worker; yields ``(base_url, api_key)``."""
    path = tmp_path / "upstream.db"
    shutil.copy(sqlite_template, path)
    port = free_port()
    up_settings = settings.replace(
        database_url=f"sqlite:///{path}",
        data_dir=tmp_path / "upstream-data",
        public_base_url=f"http://127.0.0.1:{port}",
    )
    (tmp_path / "upstream-data").mkdir()
    database = Database(up_settings.database_url)

    def unit(conn):
        account = accounts.create_account(conn, "downstream", 0.0)
        return accounts.create_key(conn, account["id"], 0.0)[0]

    key = database.write_sync(unit)
    try:
        with live_server(create_app(up_settings, database=database, embedded_worker=True), port=port) as url:
            yield url, key
    finally:
        database.close()


def test_runway_provider_runs_a_task_on_a_callboard_upstream_and_rehosts_the_output(
    db, settings, clock, make_account, upstream, tmp_path_factory
) -> None:
    url, key = upstream
    rt = runtime.build(settings.replace(rehost_outputs=True), clock)
    account, _ = make_account()
    reference = rs.short_reference(tmp_path_factory.getbasetemp() / "runner-clips")

    async def go() -> str:
        client = outbound.session(allow=None)  # the production client for providers
        provider = runway.RunwayProvider(client, base_url=url, api_key=key, clock=clock)
        job = runner.TaskRunner(db, rt, ident="downstream", provider=provider)
        tid = await rs.create(
            db, rt, account, rs.body(MEDIA / "character_photo.jpg", reference, ratio="1104:832")
        )
        try:
            for _ in range(240):
                while await job.run_once():
                    pass
                if rs.task(db, tid).status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
                await asyncio.sleep(0.5)
                clock.advance(5)
        finally:
            await job.aclose()
            await client.close()
        return tid

    tid = asyncio.run(go())
    row = rs.task(db, tid)
    assert row.status == "SUCCEEDED", (row.failure_code, row.failure)
    assert row.provider == "runway" and row.provider_task_id
    assert row.upstream_output and row.upstream_output[0].startswith(url)
    assert row.output_keys, "the output was re-hosted into the downstream's storage"
    assert rs.event_types(db, tid)[-1] == "task.succeeded"
    local = storage.from_settings(settings).local_path(row.output_keys[0])
    assert local is not None
    assert rs.probe_mp4(local) == (1104, 832, 24.0)
