"""The signed file route: Range requests (206, Content-Range, 416), Content-Type, and
links that stop working after their lifetime."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from service import media
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip

TASK = "6be1f328-0000-4000-8000-000000000003"


@pytest.fixture
def stored(db: Any, rt: Any, tmp_path: Path, make_account: AccountFactory) -> tuple[str, bytes]:
    account, _ = make_account()
    render = tmp_path / "render.mp4"
    shutil.copy(clip(5), render)
    key = asyncio.run(media.store_output(db, rt, account_id=account["id"], task_id=TASK, path=render))
    return key, clip(5).read_bytes()


def _path(rt: Any, key: str) -> str:
    return rt.links.file_url(key).removeprefix("http://testserver")


def test_whole_file_is_served_as_video_mp4_with_ranges_advertised(client: Any, rt: Any, stored: Any) -> None:
    key, body = stored
    answer = client.get(_path(rt, key))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["accept-ranges"] == "bytes"
    assert int(answer.headers["content-length"]) == len(body)
    assert answer.content == body


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-1", 0, 1),
        ("bytes=100-", 100, None),
        ("bytes=-500", -500, None),
        ("bytes=10-999999999", 10, None),
    ],
)
def test_a_range_is_answered_with_206_and_content_range(
    client: Any, rt: Any, stored: Any, header: str, start: int, end: int | None
) -> None:
    key, body = stored
    answer = client.get(_path(rt, key), headers={"Range": header})
    expected = body[start : (end + 1 if end is not None else None)] if start >= 0 else body[start:]
    first = start if start >= 0 else len(body) + start
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(body)}"
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.content == expected


def test_a_range_past_the_end_is_416(client: Any, rt: Any, stored: Any) -> None:
    key, body = stored
    answer = client.get(_path(rt, key), headers={"Range": f"bytes={len(body)}-"})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(body)}"


def test_head_describes_the_file_without_a_body(client: Any, rt: Any, stored: Any) -> None:
    key, body = stored
    answer = client.head(_path(rt, key), headers={"Range": "bytes=0-99"})
    assert answer.status_code == 206
    assert answer.headers["content-length"] == "100"
    assert answer.content == b""


def test_a_link_stops_working_after_its_lifetime(client: Any, rt: Any, clock: Any, stored: Any) -> None:
    key, _ = stored
    path = _path(rt, key)
    clock.advance(rt.settings.link_ttl_seconds - 1)
    assert client.get(path, headers={"Range": "bytes=0-1"}).status_code == 206
    clock.advance(2)
    answer = client.get(path)
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "This link has expired; fetch the task again for a fresh one",
        "code": "link_expired",
    }
    assert client.get(_path(rt, key)).status_code == 200  # a fresh signature works again


def test_forged_or_renamed_links_are_not_found(client: Any, rt: Any, stored: Any) -> None:
    key, _ = stored
    path = _path(rt, key)
    token, name = path.removeprefix("/files/").split("/")
    assert client.get(f"/files/{token[:-2]}xx/{name}").status_code == 404
    assert client.get(f"/files/{token}/other.mp4").status_code == 404
    forged = rt.links.file_url("../../secret_key").removeprefix("http://testserver")
    assert client.get(forged).status_code == 404
