"""Retention: the worker job deletes expired files, and the task records that its output
expired; inputs of unfinished tasks are kept until the task finishes."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from service import intake, media, runtime, storage, tasks, taskspec
from service import models as m
from service.media import assets, retention
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip

HOUR = 3600.0


def _task(db: Any, rt: Any, account: dict[str, Any]) -> str:
    spec = taskspec.parse(
        {
            "model": "act_two",
            "character": {"type": "image", "uri": "https://example.com/c.jpg"},
            "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
        }
    )
    return str(asyncio.run(intake.create_from_spec(db, rt, account=account, spec=spec)).row.id)


def _succeed(db: Any, rt: Any, account: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    task_id = _task(db, rt, account)
    render = tmp_path / f"{task_id}.mp4"
    shutil.copy(clip(5), render)
    key = asyncio.run(media.store_output(db, rt, account_id=account["id"], task_id=task_id, path=render))
    applied = db.write_sync(
        lambda conn: tasks.transition(
            conn,
            rt,
            task_id,
            expected=("PENDING",),
            values={"status": "SUCCEEDED", "output_keys": [key], "cost_credits": 25, "finished_at": rt.now()},
            event="task.succeeded",
        )
    )
    assert applied
    return task_id, key


def _input_asset(db: Any, rt: Any, account_id: str, task_id: str | None, kind: str = "input") -> str:
    store = storage.from_settings(rt.settings)
    asset_id = assets.new_id()
    key = f"inputs/{asset_id}/reference.mp4"
    store.put_file(key, clip(5))
    row = assets.row(
        rt,
        asset_id=asset_id,
        kind=kind,
        account_id=account_id,
        task_id=task_id,
        now=rt.now(),
        storage_key=key,
    )
    db.write_sync(lambda conn: assets.insert(conn, [row]))
    return key


def _run(db: Any, rt: Any) -> bool:
    return asyncio.run(retention.RetentionJob(db, rt, interval=0).run_once())


def test_expired_outputs_are_deleted_and_the_task_says_so(
    db: Any, rt: Any, clock: Any, client: Any, make_account: AccountFactory, tmp_path: Path
) -> None:
    account, key_secret = make_account()
    task_id, key = _succeed(db, rt, account, tmp_path)
    headers = {"Authorization": f"Bearer {key_secret}"}
    link = client.get(f"/v1/tasks/{task_id}", headers=headers).json()["output"][0]
    assert link.startswith("http://testserver/files/")
    clock.advance(rt.settings.retention_hours * HOUR - 1)
    assert _run(db, rt) is False
    assert storage.from_settings(rt.settings).stat(key) is not None
    clock.advance(2)
    _run(db, rt)
    assert storage.from_settings(rt.settings).stat(key) is None
    task = client.get(f"/v1/tasks/{task_id}", headers=headers).json()
    assert task["status"] == "SUCCEEDED"
    assert task["output"] == []
    assert task["outputExpired"] is True
    row = db.read_sync(
        lambda conn: conn.execute(
            sa.select(m.tasks.c.output_expired_at).where(m.tasks.c.id == task_id)
        ).scalar()
    )
    assert row == clock.now()
    # a link minted before expiry now finds nothing
    fresh = rt.links.file_url(key).removeprefix("http://testserver")
    assert client.get(fresh).status_code == 404


def test_inputs_of_unfinished_tasks_outlive_their_expiry(
    db: Any, rt: Any, clock: Any, make_account: AccountFactory
) -> None:
    account, _ = make_account()
    task_id = _task(db, rt, account)
    key = _input_asset(db, rt, account["id"], task_id)
    clock.advance(rt.settings.retention_hours * HOUR + 1)
    _run(db, rt)
    assert storage.from_settings(rt.settings).stat(key) is not None
    db.write_sync(lambda conn: tasks.cancel_or_delete(conn, rt, account["id"], task_id))
    _run(db, rt)
    assert storage.from_settings(rt.settings).stat(key) is None


def test_uploads_are_kept_at_least_a_day_and_nothing_expires_with_retention_off(
    db: Any, settings: Any, clock: Any, make_account: AccountFactory
) -> None:
    account, _ = make_account()
    short = runtime.build(settings.replace(retention_hours=1.0), clock)
    upload_key = _input_asset(db, short, account["id"], None, kind="upload")
    input_key = _input_asset(db, short, account["id"], None)
    clock.advance(2 * HOUR)
    _run(db, short)
    store = storage.from_settings(settings)
    assert store.stat(input_key) is None
    assert store.stat(upload_key) is not None
    clock.advance(23 * HOUR)
    _run(db, short)
    assert store.stat(upload_key) is None

    off = runtime.build(settings.replace(retention_hours=0.0), clock)
    kept = _input_asset(db, off, account["id"], None)
    clock.advance(10_000 * HOUR)
    _run(db, off)
    assert store.stat(kept) is not None


def test_retention_works_through_many_batches(
    db: Any, rt: Any, clock: Any, make_account: AccountFactory
) -> None:
    account, _ = make_account()
    keys = [_input_asset(db, rt, account["id"], None) for _ in range(5)]
    clock.advance(rt.settings.retention_hours * HOUR + 1)
    job = retention.RetentionJob(db, rt, batch=2, interval=0)
    rounds = 0
    while asyncio.run(job.run_once()):
        rounds += 1
    assert rounds == 2  # 2 + 2 full batches, then 1
    store = storage.from_settings(rt.settings)
    assert all(store.stat(key) is None for key in keys)
    deleted = db.read_sync(
        lambda conn: conn.execute(
            sa.select(sa.func.count()).where(m.assets.c.deleted_at.is_not(None))
        ).scalar()
    )
    assert deleted == 5


def test_retention_also_removes_the_dashboard_thumbnails_of_the_task(
    db: Any, rt: Any, clock: Any, make_account: AccountFactory, tmp_path: Path
) -> None:
    account, _ = make_account()
    task_id, key = _succeed(db, rt, account, tmp_path)
    store = storage.from_settings(rt.settings)
    with store.writer(f"thumbs/{task_id}/output.jpg") as out:
        out.write(b"\xff\xd8 thumbnail")
    assert store.stat(f"thumbs/{task_id}/output.jpg") is not None
    clock.advance(rt.settings.retention_hours * HOUR + 1)
    _run(db, rt)
    assert store.stat(key) is None
    assert store.stat(f"thumbs/{task_id}/output.jpg") is None
