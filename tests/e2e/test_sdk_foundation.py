"""The official runwayml SDK, pointed at a live Callboard on loopback, as a test oracle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import runwayml

from tests.conftest import AccountFactory
from tests.support import live_server

IMG = "https://example.com/character.jpg"
VID = "https://example.com/reference.mp4"


@pytest.fixture
def base_url(app: Any) -> Iterator[str]:
    with live_server(app) as url:
        yield url


@pytest.fixture
def sdk(base_url: str, make_account: AccountFactory) -> runwayml.RunwayML:
    _, key = make_account("sdk-user")
    return runwayml.RunwayML(api_key=key, base_url=base_url, max_retries=0)


def _create(sdk: runwayml.RunwayML, **extra: Any) -> Any:
    return sdk.character_performance.create(
        model="act_two",
        character={"type": "image", "uri": IMG},
        reference={"type": "video", "uri": VID},
        **extra,
    )


def test_sdk_creates_retrieves_and_cancels(sdk: runwayml.RunwayML) -> None:
    created = _create(sdk, ratio="960:960", expression_intensity=4, body_control=False, seed=7)
    assert created.estimated_cost.credits == 150.0
    task = sdk.tasks.retrieve(created.id)
    assert task.status == "PENDING"
    assert task.id == created.id
    sdk.tasks.delete(created.id)
    assert sdk.tasks.retrieve(created.id).status == "CANCELLED"


def test_sdk_gateway_fields_ride_in_extra_body(sdk: runwayml.RunwayML) -> None:
    created = _create(sdk, extra_body={"replyUrl": "https://hooks.example.com/x", "replyRef": "abc"})
    raw = sdk.tasks.with_raw_response.retrieve(created.id).http_response.json()
    assert raw["replyRef"] == "abc"


def test_sdk_idempotency_key_via_extra_headers(sdk: runwayml.RunwayML) -> None:
    a = _create(sdk, extra_headers={"Idempotency-Key": "sdk-1"})
    b = _create(sdk, extra_headers={"Idempotency-Key": "sdk-1"})
    assert a.id == b.id


def test_sdk_error_classes(sdk: runwayml.RunwayML, base_url: str) -> None:
    with pytest.raises(runwayml.BadRequestError) as bad:
        _create(sdk, expression_intensity=9)
    assert "expressionIntensity" in str(bad.value)
    with pytest.raises(runwayml.NotFoundError):
        sdk.tasks.retrieve("00000000-0000-4000-8000-000000000000")
    stranger = runwayml.RunwayML(api_key="cb_not-a-real-key", base_url=base_url, max_retries=0)
    with pytest.raises(runwayml.AuthenticationError):
        stranger.tasks.retrieve("00000000-0000-4000-8000-000000000000")
    with pytest.raises(runwayml.UnprocessableEntityError):
        _create(sdk, extra_headers={"Idempotency-Key": "sdk-2"})
        _create(sdk, seed=1, extra_headers={"Idempotency-Key": "sdk-2"})


def test_sdk_reads_organization_and_usage(sdk: runwayml.RunwayML) -> None:
    org = sdk.organization.retrieve()
    assert org.tier.models["act_two"].max_concurrent_generations == 5
    assert org.usage.models["act_two"].daily_generations == 0
    usage = sdk.organization.retrieve_usage()
    assert usage.results == []
