"""Runway's upload flow over HTTP: POST /v1/uploads, the signed upload target, and the
runwayUri in creates — with every rejection a user can meet and its exact message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import models as m
from service import storage
from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip
from tests.support import MEDIA

PHOTO = MEDIA / "character_photo.jpg"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(client: Any, key: str, path: Path, name: str | None = None, content: bytes | None = None) -> Any:
    started = client.post(
        "/v1/uploads", json={"filename": name or path.name, "type": "ephemeral"}, headers=_auth(key)
    )
    assert started.status_code == 200, started.text
    body = started.json()
    data = content if content is not None else path.read_bytes()
    answer = client.post(body["uploadUrl"], data=body["fields"], files={"file": (name or path.name, data)})
    return body, answer


def _create(client: Any, key: str, character: dict[str, str], reference: dict[str, str]) -> Any:
    return client.post(
        "/v1/character_performance",
        json={"model": "act_two", "character": character, "reference": reference},
        headers=_auth(key),
    )


def test_uploaded_files_are_usable_in_a_create_and_estimate_from_the_clip(
    client: Any, make_account: AccountFactory, db: Any
) -> None:
    _, key = make_account()
    photo, answer = _upload(client, key, PHOTO)
    assert answer.status_code == 204
    assert photo["runwayUri"].startswith("runway://callboard/uploads/ast_")
    assert photo["uploadUrl"].startswith("http://testserver/uploads/")
    clip_body, answer = _upload(client, key, clip(5), "performance.mp4")
    assert answer.status_code == 204
    created = _create(
        client,
        key,
        {"type": "image", "uri": photo["runwayUri"]},
        {"type": "video", "uri": clip_body["runwayUri"]},
    )
    assert created.status_code == 200, created.text
    assert created.json()["estimatedCost"] == {"credits": 25.0}  # 5 s x 5 credits
    row = db.read_sync(lambda c: c.execute(sa.select(m.assets).where(m.assets.c.kind == "upload")).all())
    assert {r.content_type for r in row} == {"image/jpeg", "video/mp4"}
    assert all(r.media and r.sha256 and r.size for r in row)


def test_a_repeated_post_of_the_same_file_is_accepted_and_another_file_is_refused(
    client: Any, make_account: AccountFactory
) -> None:
    _, key = make_account()
    body, answer = _upload(client, key, PHOTO)
    assert answer.status_code == 204
    again = client.post(body["uploadUrl"], data=body["fields"], files={"file": ("p.jpg", PHOTO.read_bytes())})
    assert again.status_code == 204
    other = client.post(
        body["uploadUrl"],
        data=body["fields"],
        files={"file": ("p.jpg", (MEDIA / "character_dog.jpg").read_bytes())},
    )
    assert other.status_code == 400
    assert other.json() == {
        "error": "This upload already has a file; request a new upload URL with POST /v1/uploads",
        "code": "upload_completed",
        "field": "file",
    }


@pytest.mark.parametrize(
    ("name", "content", "status", "error"),
    [
        (
            "notes.mp4",
            b"this is not a video at all " * 40,
            400,
            "file: The file is not a supported image (JPEG, PNG, WebP) or video (MP4, MOV, WebM).",
        ),
        (
            "tiny.jpg",
            PHOTO.read_bytes()[:100],
            400,
            "file: the file is 100 bytes; uploads must be 512 bytes to 200 MB",
        ),
        (
            "mpeg4.mp4",
            clip(4, codec="mpeg4").read_bytes(),
            400,
            "file: The video codec 'mpeg4' is not supported (use H.264, H.265, VP8, VP9, AV1 or ProRes).",
        ),
    ],
)
def test_unusable_files_are_refused_at_the_upload_target(
    client: Any, make_account: AccountFactory, name: str, content: bytes, status: int, error: str
) -> None:
    _, key = make_account()
    _, answer = _upload(client, key, PHOTO, name=name, content=content)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["field"] == "file"


def test_an_upload_past_the_size_limit_is_cut_off(
    settings: Any, db: Any, clock: Any, make_account: AccountFactory
) -> None:
    from starlette.testclient import TestClient

    from service.api.app import create_app

    small = settings.replace(upload_max_bytes=50_000)
    app = create_app(small, clock=clock, database=db, embedded_worker=False)
    _, key = make_account()
    with TestClient(app, raise_server_exceptions=False) as client:
        _, answer = _upload(client, key, PHOTO)  # 90 KB
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "file: the file is larger than the 50000 bytes allowed",
            "code": "payload_too_large",
            "field": "file",
        }
    leftovers = [p for p in storage.from_settings(small).root.rglob("*") if p.is_file()]
    assert leftovers == []
    assert [p for p in (small.data_dir / "tmp").rglob("*") if p.is_file()] == []


def test_upload_start_validates_its_body(client: Any, make_account: AccountFactory) -> None:
    _, key = make_account()
    bad = client.post("/v1/uploads", json={"filename": "notes.txt", "type": "ephemeral"}, headers=_auth(key))
    assert bad.status_code == 400
    assert bad.json()["field"] == "filename"
    bad = client.post("/v1/uploads", json={"filename": "a.jpg", "type": "permanent"}, headers=_auth(key))
    assert (bad.status_code, bad.json()["field"]) == (400, "type")
    assert client.post("/v1/uploads", json={"filename": "a.jpg"}).status_code == 401


def test_upload_target_refuses_forged_and_expired_tokens(
    client: Any, make_account: AccountFactory, clock: Any
) -> None:
    _, key = make_account()
    body = client.post("/v1/uploads", json={"filename": "a.jpg"}, headers=_auth(key)).json()
    forged = body["uploadUrl"][:-3] + "abc"
    answer = client.post(forged, data=body["fields"], files={"file": ("a.jpg", PHOTO.read_bytes())})
    assert answer.status_code == 404
    clock.advance(3601)
    answer = client.post(
        body["uploadUrl"], data=body["fields"], files={"file": ("a.jpg", PHOTO.read_bytes())}
    )
    assert answer.status_code == 403
    assert answer.json()["error"] == "This upload URL has expired; request a new one with POST /v1/uploads"


def _started_and_uploaded(client: Any, key: str, path: Path, name: str | None = None) -> str:
    body, answer = _upload(client, key, path, name)
    assert answer.status_code == 204, answer.text
    return str(body["runwayUri"])


def test_create_refuses_unusable_uploads_naming_the_field(
    client: Any, make_account: AccountFactory, clock: Any
) -> None:
    _, key = make_account()
    _, other_key = make_account()
    photo = _started_and_uploaded(client, key, PHOTO)
    short = _started_and_uploaded(client, key, clip(2.1), "short.mp4")
    good = _started_and_uploaded(client, key, clip(5), "good.mp4")
    pending = client.post("/v1/uploads", json={"filename": "later.jpg"}, headers=_auth(key)).json()[
        "runwayUri"
    ]
    cases = [
        (
            key,
            {"type": "image", "uri": photo},
            {"type": "video", "uri": short},
            "reference.uri",
            "reference.uri: The reference video is 2.1 s long; it must be 3 to 30 seconds.",
        ),
        (
            key,
            {"type": "video", "uri": photo},
            {"type": "video", "uri": good},
            "character.uri",
            "character.uri: The character is declared as a video but the file is an image.",
        ),
        (
            key,
            {"type": "image", "uri": pending},
            {"type": "video", "uri": good},
            "character.uri",
            "character.uri: the upload has no file yet; POST the file to its uploadUrl first",
        ),
        (
            other_key,
            {"type": "image", "uri": photo},
            {"type": "video", "uri": good},
            "character.uri",
            "character.uri: no such upload (runwayUri values are valid for the account that uploaded)",
        ),
        (
            key,
            {"type": "image", "uri": "runway://somewhere-else/123"},
            {"type": "video", "uri": good},
            "character.uri",
            "character.uri: no such upload (use the runwayUri that POST /v1/uploads returned)",
        ),
    ]
    for who, character, reference, field, error in cases:
        answer = _create(client, who, character, reference)
        assert answer.status_code == 400, (field, answer.text)
        assert answer.json() == {"error": error, "code": "validation_error", "field": field}
    clock.advance(24 * 3600 + 1)
    answer = _create(client, key, {"type": "image", "uri": photo}, {"type": "video", "uri": good})
    assert answer.json()["error"] == "character.uri: the upload has expired; uploads can be used for 24 hours"


def test_the_upload_target_wants_multipart(client: Any, make_account: AccountFactory) -> None:
    _, key = make_account()
    body = client.post("/v1/uploads", json={"filename": "a.jpg"}, headers=_auth(key)).json()
    answer = client.post(
        body["uploadUrl"], content=PHOTO.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    assert answer.status_code == 415
    assert answer.json()["field"] == "file"
    answer = client.post(body["uploadUrl"], data=body["fields"], files={"image": ("a.jpg", b"tiny")})
    assert answer.status_code == 400
    assert answer.json()["error"] == "file: the form has no part named 'file'"
