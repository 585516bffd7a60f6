"""Outputs into storage (local renders and re-hosted provider outputs) and inputs
handed to a Runway-compatible provider."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import sqlalchemy as sa

from service import media, runtime, storage
from service import models as m
from service.media import refs
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip
from tests.support import MEDIA

TASK = "6be1f328-0000-4000-8000-000000000002"


def _assets(db: Any) -> list[Any]:
    return db.read_sync(lambda conn: conn.execute(sa.select(m.assets).order_by(m.assets.c.created_at)).all())


def test_store_output_moves_the_render_and_records_an_expiring_asset(
    db: Any, rt: Any, tmp_path: Path, make_account: AccountFactory
) -> None:
    account, _ = make_account()
    render = tmp_path / "render.mp4"
    shutil.copy(clip(5), render)
    key = asyncio.run(media.store_output(db, rt, account_id=account["id"], task_id=TASK, path=render))
    assert key.startswith(f"outputs/{TASK}/") and key.endswith(".mp4")
    assert not render.exists()
    store = storage.from_settings(rt.settings)
    assert store.stat(key).size == clip(5).stat().st_size
    (row,) = _assets(db)
    assert (row.kind, row.task_id, row.storage_key, row.content_type) == ("output", TASK, key, "video/mp4")
    assert row.expires_at == pytest.approx(rt.now() + rt.settings.retention_hours * 3600)


def test_rehost_streams_provider_outputs_into_storage(db: Any, rt: Any, make_account: AccountFactory) -> None:
    account, _ = make_account()
    body = clip(5).read_bytes()

    async def main() -> list[str]:
        with respx.mock() as router:
            router.get("https://cdn.runway.example/out/abc.mp4?sig=1").respond(
                200, content=body, headers={"content-type": "video/mp4"}
            )
            async with httpx.AsyncClient() as http:
                return await media.rehost(
                    db,
                    rt,
                    http,
                    account_id=account["id"],
                    task_id=TASK,
                    urls=["https://cdn.runway.example/out/abc.mp4?sig=1"],
                )

    (key,) = asyncio.run(main())
    store = storage.from_settings(rt.settings)
    assert b"".join(store.iter_chunks(key)) == body
    (row,) = _assets(db)
    assert (row.kind, row.size, row.storage_key) == ("output", len(body), key)
    assert list(store.root.rglob("*.part")) == []


def test_rehost_failure_stores_nothing_and_says_why(db: Any, rt: Any, make_account: AccountFactory) -> None:
    account, _ = make_account()

    async def main() -> None:
        with respx.mock() as router:
            router.get("https://cdn.runway.example/a.mp4").respond(200, content=b"a" * 2048)
            router.get("https://cdn.runway.example/b.mp4").respond(502)
            async with httpx.AsyncClient() as http:
                await media.rehost(
                    db,
                    rt,
                    http,
                    account_id=account["id"],
                    task_id=TASK,
                    urls=["https://cdn.runway.example/a.mp4", "https://cdn.runway.example/b.mp4"],
                )

    with pytest.raises(media.MediaError) as caught:
        asyncio.run(main())
    assert (caught.value.failure_code, caught.value.retryable) == ("INTERNAL", True)
    assert caught.value.message == "The provider's output URL answered HTTP 502."
    assert _assets(db) == []
    assert [p for p in storage.from_settings(rt.settings).root.rglob("*") if p.is_file()] == []


def test_rehost_is_skipped_when_the_setting_is_off(db: Any, settings: Any, clock: Any) -> None:
    off = runtime.build(settings.replace(rehost_outputs=False), clock)

    async def main() -> list[str]:
        async with httpx.AsyncClient() as http:
            return await media.rehost(
                db, off, http, account_id="x", task_id=TASK, urls=["https://a.example/o.mp4"]
            )

    assert asyncio.run(main()) == []


def _store_input(db: Any, rt: Any, account_id: str, source: Path, content_type: str) -> str:
    """Put a file in storage as an ``input`` asset, as intake does for a data URI."""
    from service.media import assets

    store = storage.from_settings(rt.settings)
    asset_id = assets.new_id()
    key = f"inputs/{asset_id}/input{source.suffix}"
    stat = store.put_file(key, source)
    row = assets.row(
        rt,
        asset_id=asset_id,
        kind="input",
        account_id=account_id,
        now=rt.now(),
        content_type=content_type,
        size=stat.size,
        storage_key=key,
    )
    db.write_sync(lambda conn: assets.insert(conn, [row]))
    return refs.asset_uri(asset_id)


def _provider_uri(
    db: Any, rt: Any, account_id: str, role: str, ref: dict[str, str], uploaded: list[Any]
) -> str:
    async def upload(path: Path, filename: str) -> str:
        uploaded.append((path.read_bytes(), filename))
        return "runway://uploaded-at-runway/1"

    async def main() -> str:
        async with httpx.AsyncClient() as http:
            return await media.provider_uri(
                db, rt, http, account_id=account_id, task_id=TASK, role=role, ref=ref, upload=upload
            )

    return asyncio.run(main())


def test_provider_uri_passes_urls_and_small_files_inline(
    db: Any, rt: Any, make_account: AccountFactory
) -> None:
    account, _ = make_account()
    uploaded: list[Any] = []
    url = "https://example.com/character.jpg"
    assert _provider_uri(db, rt, account["id"], "character", {"type": "image", "uri": url}, uploaded) == url
    foreign = "runway://made-at-runway/xyz"
    assert (
        _provider_uri(db, rt, account["id"], "character", {"type": "image", "uri": foreign}, uploaded)
        == foreign
    )
    stored = _store_input(db, rt, account["id"], MEDIA / "character_photo.jpg", "image/jpeg")
    inline = _provider_uri(db, rt, account["id"], "character", {"type": "image", "uri": stored}, uploaded)
    assert inline.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(inline.split(",", 1)[1]) == (MEDIA / "character_photo.jpg").read_bytes()
    assert uploaded == []


def test_provider_uri_uses_the_upload_api_past_the_data_uri_limit(
    db: Any, rt: Any, make_account: AccountFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.media import validation

    monkeypatch.setattr(validation, "VIDEO_DATA_URI_MAX", 64 * 1024)  # the clip is ~58 KB: 78 KB as base64
    account, _ = make_account()
    stored = _store_input(db, rt, account["id"], clip(5), "video/mp4")
    uploaded: list[Any] = []
    uri = _provider_uri(db, rt, account["id"], "reference", {"type": "video", "uri": stored}, uploaded)
    assert uri == "runway://uploaded-at-runway/1"
    assert uploaded == [(clip(5).read_bytes(), "reference.mp4")]


def test_another_accounts_asset_is_not_usable(db: Any, rt: Any, make_account: AccountFactory) -> None:
    owner, _ = make_account()
    stranger, _ = make_account()
    stored = _store_input(db, rt, owner["id"], MEDIA / "character_photo.jpg", "image/jpeg")

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            await media.fetch_input(
                db,
                rt,
                http,
                account_id=stranger["id"],
                task_id=TASK,
                role="character",
                ref={"type": "image", "uri": stored},
            )

    with pytest.raises(media.InputError) as caught:
        asyncio.run(main())
    assert (
        caught.value.message
        == "The character stored input no longer exists (files are kept for a limited time)."
    )
