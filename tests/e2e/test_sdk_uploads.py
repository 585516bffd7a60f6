"""The official runwayml SDK's upload flow against a live Callboard, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runwayml

from tests.conftest import AccountFactory
from tests.integration.test_media_support import clip
from tests.support import MEDIA, free_port, live_server


@pytest.fixture
def base_url(settings: Any, db: Any, clock: Any) -> Iterator[str]:
    from service.api.app import create_app

    port = free_port()
    public = f"http://127.0.0.1:{port}"
    app = create_app(
        settings.replace(public_base_url=public), clock=clock, database=db, embedded_worker=False
    )
    with live_server(app, port=port) as url:
        yield url


@pytest.fixture
def sdk(base_url: str, make_account: AccountFactory) -> runwayml.RunwayML:
    _, key = make_account("sdk-uploader")
    return runwayml.RunwayML(api_key=key, base_url=base_url, max_retries=0)


def test_create_ephemeral_uploads_are_usable_in_a_create(sdk: runwayml.RunwayML) -> None:
    character = sdk.uploads.create_ephemeral(file=MEDIA / "character_photo.jpg")
    reference = sdk.uploads.create_ephemeral(file=clip(5))
    assert character.uri.startswith("runway://")
    created = sdk.character_performance.create(
        model="act_two",
        character={"type": "image", "uri": character.uri},
        reference={"type": "video", "uri": reference.uri},
    )
    assert created.estimated_cost.credits == 25.0
    assert sdk.tasks.retrieve(created.id).status == "PENDING"


def test_an_unusable_upload_surfaces_as_an_sdk_error(sdk: runwayml.RunwayML, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_bytes(b"plain text, not a video " * 64)
    with pytest.raises(runwayml.APIStatusError) as caught:
        sdk.uploads.create_ephemeral(file=bogus)
    assert caught.value.status_code == 400
    assert "not a supported image" in caught.value.response.text


def test_a_too_short_uploaded_reference_is_a_bad_request(sdk: runwayml.RunwayML) -> None:
    character = sdk.uploads.create_ephemeral(file=MEDIA / "character_photo.jpg")
    reference = sdk.uploads.create_ephemeral(file=clip(2.1))
    with pytest.raises(runwayml.BadRequestError) as caught:
        sdk.character_performance.create(
            model="act_two",
            character={"type": "image", "uri": character.uri},
            reference={"type": "video", "uri": reference.uri},
        )
    assert caught.value.body["error"] == (  # type: ignore[index]
        "reference.uri: The reference video is 2.1 s long; it must be 3 to 30 seconds."
    )
    assert caught.value.body["field"] == "reference.uri"  # type: ignore[index]


def test_the_async_client_uploads_too(base_url: str, make_account: AccountFactory) -> None:
    import asyncio

    _, key = make_account("async-uploader")

    async def main() -> str:
        async with runwayml.AsyncRunwayML(api_key=key, base_url=base_url, max_retries=0) as client:
            result = await client.uploads.create_ephemeral(file=MEDIA / "character_dog.jpg")
            return str(result.uri)

    assert asyncio.run(main()).startswith("runway://callboard/uploads/")
