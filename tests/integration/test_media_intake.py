"""Data URIs at create time: validated at once (400 naming the field), stored as assets
so the task spec keeps a short reference, and fetched back by the worker."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from service import media, storage, tasks
from service import models as m
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip
from tests.support import MEDIA

PHOTO = MEDIA / "character_photo.jpg"


def _data_uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


def _create(
    client: Any, key: str, character: dict[str, str], reference: dict[str, str], **headers: str
) -> Any:
    return client.post(
        "/v1/character_performance",
        json={"model": "act_two", "character": character, "reference": reference},
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def _stored_files(rt: Any) -> list[Path]:
    root = storage.from_settings(rt.settings).root
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_data_uris_are_stored_as_assets_and_the_spec_keeps_a_reference(
    client: Any, make_account: AccountFactory, db: Any, rt: Any
) -> None:
    account, key = make_account()
    answer = _create(
        client,
        key,
        {"type": "image", "uri": _data_uri(PHOTO, "image/jpeg")},
        {"type": "video", "uri": _data_uri(clip(5), "video/mp4")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["estimatedCost"] == {"credits": 25.0}
    task_id = answer.json()["id"]
    spec = db.read_sync(lambda conn: tasks.get_spec(conn, task_id))
    assert spec["character"]["uri"].startswith("callboard://assets/ast_")
    assert spec["reference"]["uri"].startswith("callboard://assets/ast_")
    rows = db.read_sync(lambda conn: conn.execute(sa.select(m.assets)).all())
    assert {(r.kind, r.task_id, r.content_type) for r in rows} == {
        ("input", task_id, "image/jpeg"),
        ("input", task_id, "video/mp4"),
    }

    async def fetch() -> tuple[Path, Path]:
        async with httpx.AsyncClient() as http:
            character = await media.fetch_input(
                db,
                rt,
                http,
                account_id=account["id"],
                task_id=task_id,
                role="character",
                ref=spec["character"],
            )
            reference = await media.fetch_input(
                db,
                rt,
                http,
                account_id=account["id"],
                task_id=task_id,
                role="reference",
                ref=spec["reference"],
            )
            return character, reference

    character, reference = asyncio.run(fetch())
    assert character.read_bytes() == PHOTO.read_bytes()
    assert reference.read_bytes() == clip(5).read_bytes()


def test_bad_data_uris_are_refused_at_create_naming_the_field(
    client: Any, make_account: AccountFactory, rt: Any
) -> None:
    _, key = make_account()
    good_ref = {"type": "video", "uri": _data_uri(clip(5), "video/mp4")}
    good_char = {"type": "image", "uri": _data_uri(PHOTO, "image/jpeg")}
    cases = [
        (
            good_char,
            {"type": "video", "uri": _data_uri(clip(2.1), "video/mp4")},
            "reference.uri",
            "reference.uri: The reference video is 2.1 s long; it must be 3 to 30 seconds.",
        ),
        (
            good_char,
            {"type": "video", "uri": _data_uri(clip(31), "video/mp4")},
            "reference.uri",
            "reference.uri: The reference video is 31.0 s long; it must be 3 to 30 seconds.",
        ),
        (
            {
                "type": "image",
                "uri": "data:image/png;base64,"
                + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode(),
            },
            good_ref,
            "character.uri",
            "character.uri: The PNG image is corrupt or truncated.",
        ),
        (
            {"type": "video", "uri": _data_uri(PHOTO, "video/mp4")},
            good_ref,
            "character.uri",
            "character.uri: The character is declared as a video but the file is an image.",
        ),
        (
            good_char,
            {"type": "video", "uri": _data_uri(clip(4, codec="mpeg4"), "video/mp4")},
            "reference.uri",
            "reference.uri: The video codec 'mpeg4' is not supported (use H.264, H.265, VP8, VP9, AV1 or ProRes).",
        ),
    ]
    for character, reference, field, error in cases:
        answer = _create(client, key, character, reference)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"error": error, "code": "validation_error", "field": field}
    assert _stored_files(rt) == []  # a refused create leaves nothing stored


def test_an_idempotent_replay_with_data_uris_stores_nothing_twice(
    client: Any, make_account: AccountFactory, db: Any, rt: Any
) -> None:
    _, key = make_account()
    character = {"type": "image", "uri": _data_uri(PHOTO, "image/jpeg")}
    reference = {"type": "video", "uri": _data_uri(clip(5), "video/mp4")}
    first = _create(client, key, character, reference, **{"Idempotency-Key": "k1"})
    second = _create(client, key, character, reference, **{"Idempotency-Key": "k1"})
    assert first.json()["id"] == second.json()["id"]
    assert len(_stored_files(rt)) == 2
    assert (
        db.read_sync(lambda conn: conn.execute(sa.select(sa.func.count()).select_from(m.assets)).scalar())
        == 2
    )


def test_https_inputs_are_left_for_the_worker_and_estimated_at_the_maximum(
    client: Any, make_account: AccountFactory
) -> None:
    _, key = make_account()
    answer = _create(
        client,
        key,
        {"type": "image", "uri": "https://example.com/c.jpg"},
        {"type": "video", "uri": "https://example.com/r.mp4"},
    )
    assert answer.status_code == 200
    assert answer.json()["estimatedCost"] == {"credits": 150.0}
