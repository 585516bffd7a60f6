"""An output URL from a SUCCEEDED task, fetched the way a video element does (Range
requests over real HTTP), and the same URL refused after its lifetime."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import intake, media, tasks, taskspec
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip
from tests.support import free_port, live_server


@pytest.fixture
def base_url(settings: Any, db: Any, clock: Any) -> Iterator[str]:
    from service.api.app import create_app

    port = free_port()
    app = create_app(
        settings.replace(public_base_url=f"http://127.0.0.1:{port}"),
        clock=clock,
        database=db,
        embedded_worker=False,
    )
    with live_server(app, port=port) as url:
        yield url


def _succeeded_task(db: Any, rt: Any, account: dict[str, Any], tmp_path: Path) -> str:
    spec = taskspec.parse(
        {
            "model": "act_two",
            "character": {"type": "image", "uri": "https://example.com/c.jpg"},
            "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
        }
    )
    task_id = str(asyncio.run(intake.create_from_spec(db, rt, account=account, spec=spec)).row.id)
    render = tmp_path / "render.mp4"
    shutil.copy(clip(5), render)
    key = asyncio.run(media.store_output(db, rt, account_id=account["id"], task_id=task_id, path=render))
    assert db.write_sync(
        lambda conn: tasks.transition(
            conn,
            rt,
            task_id,
            expected=("PENDING",),
            values={"status": "SUCCEEDED", "output_keys": [key], "cost_credits": 25, "finished_at": rt.now()},
            event="task.succeeded",
        )
    )
    return task_id


def test_output_plays_with_seeking_and_expires(
    base_url: str, db: Any, rt: Any, clock: Any, make_account: AccountFactory, tmp_path: Path
) -> None:
    account, key = make_account()
    task_id = _succeeded_task(db, rt, account, tmp_path)
    body = clip(5).read_bytes()
    with httpx.Client(base_url=base_url, timeout=10) as http:
        task = http.get(f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"}).json()
        (url,) = task["output"]
        assert url.startswith(f"{base_url}/files/") and url.endswith(".mp4")
        # what a <video> element sends: a probe, then seeks
        probe = http.get(url, headers={"Range": "bytes=0-"})
        assert probe.status_code == 206
        assert probe.headers["content-type"] == "video/mp4"
        assert probe.headers["content-range"] == f"bytes 0-{len(body) - 1}/{len(body)}"
        seek = http.get(url, headers={"Range": f"bytes={len(body) // 2}-{len(body) // 2 + 4095}"})
        assert seek.status_code == 206
        assert seek.content == body[len(body) // 2 : len(body) // 2 + 4096]
        assert http.get(url, headers={"Range": f"bytes={len(body) + 10}-"}).status_code == 416

        clock.advance(rt.settings.link_ttl_seconds + 1)
        assert http.get(url).status_code == 403
        # fetching the task again re-signs the link
        (fresh,) = http.get(f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"}).json()[
            "output"
        ]
        assert fresh != url
        assert http.get(fresh).content == body
