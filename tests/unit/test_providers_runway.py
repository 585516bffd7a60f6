"""The Runway-compatible providers against respx: every status and every error class.

The suite is parametrised over ``runway`` and ``cometapi`` (same wire format at another
base URL and model name); CometAPI's own quirks have their own tests at the end.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from service.providers import base, cometapi, runway

BASE = "https://upstream.example.com"
TID = "7a1c2f2e-0000-4000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t


@pytest.fixture(params=["runway", "cometapi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


_TLS = ssl.create_default_context()


def make(kind: str, **kw: Any) -> runway.RunwayProvider:
    http = httpx.AsyncClient(verify=_TLS)
    if kind == "runway":
        return runway.RunwayProvider(http, base_url=BASE, api_key="key_123", clock=Clock(), **kw)
    return cometapi.CometProvider(
        http, base_url=BASE, api_key="key_123", clock=Clock(), not_found_grace=30, **kw
    )


def prefix(kind: str) -> str:
    return "/v1" if kind == "runway" else "/runwayml/v1"


JOB = base.Job(
    character={"type": "image", "uri": "https://cdn.example.com/c.jpg"},
    reference={"type": "video", "uri": "https://cdn.example.com/r.mp4"},
    ratio="960:960",
    seed=42,
    expression_intensity=4,
    body_control=False,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_submit_sends_runways_create_body_with_key_and_version(kind, router) -> None:
    route = router.post(f"{prefix(kind)}/character_performance").respond(200, json={"id": TID})
    assert run(make(kind).submit(JOB)) == TID
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer key_123"
    assert request.headers["x-runway-version"] == "2024-11-06"
    sent = orjson.loads(request.content)
    assert sent == {
        "model": "act_two" if kind == "runway" else "runwayml-character-performance",
        "character": {"type": "image", "uri": "https://cdn.example.com/c.jpg"},
        "reference": {"type": "video", "uri": "https://cdn.example.com/r.mp4"},
        "ratio": "960:960",
        "seed": 42,
        "expressionIntensity": 4,
        "bodyControl": False,
        "contentModeration": {"publicFigureThreshold": "auto"},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "PENDING"}, base.Status("PENDING")),
        ({"status": "THROTTLED"}, base.Status("THROTTLED")),
        ({"status": "RUNNING", "progress": 0.42}, base.Status("RUNNING", progress=0.42)),
        ({"status": "RUNNING", "progress": 7}, base.Status("RUNNING", progress=1.0)),
        (
            {"status": "SUCCEEDED", "output": ["https://cdn/o.mp4"], "cost": {"credits": 40}},
            base.Status("SUCCEEDED", output=("https://cdn/o.mp4",), cost_credits=40),
        ),
        (
            {"status": "FAILED", "failure": "Input flagged", "failureCode": "SAFETY.INPUT.IMAGE"},
            base.Status("FAILED", failure="Input flagged", failure_code="SAFETY.INPUT.IMAGE"),
        ),
        (
            {"status": "FAILED", "failure": "Bad output", "failureCode": "INTERNAL.BAD_OUTPUT.CODE01"},
            base.Status("FAILED", failure="Bad output", failure_code="INTERNAL.BAD_OUTPUT.CODE01"),
        ),
        ({"status": "CANCELLED", "cost": {"credits": 0}}, base.Status("CANCELLED", cost_credits=0)),
    ],
)
def test_poll_maps_every_status(kind, router, body, expected) -> None:
    router.get(f"{prefix(kind)}/tasks/{TID}").respond(200, json={"id": TID, "createdAt": "x", **body})
    assert run(make(kind).poll(TID, age=100)) == expected


def test_poll_of_an_unknown_status_is_transient(kind, router) -> None:
    router.get(f"{prefix(kind)}/tasks/{TID}").respond(200, json={"id": TID, "status": "WEIRD"})
    with pytest.raises(base.Transient):
        run(make(kind).poll(TID, age=100))


HTTP_DATE = email.utils.formatdate(1_800_000_000.0 + 12, usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "creating", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, True, base.Throttled, 7.0),
        (429, {"Retry-After": "7"}, False, base.Transient, 7.0),
        (429, {"retry-after-ms": "1500"}, False, base.Transient, 1.5),
        (502, {}, False, base.Transient, None),
        (503, {"Retry-After": HTTP_DATE}, True, base.Transient, 12.0),
        (504, {}, True, base.Transient, None),
        (500, {}, False, base.Transient, None),
    ],
)
def test_retryable_answers_are_transient_with_retry_after(
    kind, router, status, headers, creating, error, retry_after
) -> None:
    provider = make(kind)
    if creating:
        router.post(f"{prefix(kind)}/character_performance").respond(
            status, headers=headers, json={"error": "busy"}
        )
        call = provider.submit(JOB)
    else:
        router.get(f"{prefix(kind)}/tasks/{TID}").respond(status, headers=headers, json={"error": "busy"})
        call = provider.poll(TID, age=100)
    with pytest.raises(error) as caught:
        run(call)
    assert type(caught.value) is error
    assert caught.value.retry_after == (pytest.approx(retry_after, abs=1.0) if retry_after else None)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"error": "character.uri: the asset could not be read"}, "ASSET.INVALID"),
        (
            400,
            {"error": "Invalid", "failureCode": "INPUT_PREPROCESSING.SAFETY.TEXT"},
            "INPUT_PREPROCESSING.SAFETY.TEXT",
        ),
        (401, {"error": "Invalid API key"}, "INTERNAL"),
        (403, {"error": "Forbidden"}, "INTERNAL"),
        (422, {"error": "unsupported model"}, "INTERNAL"),
    ],
)
def test_refusals_are_rejected_with_a_failure_code(kind, router, status, body, code) -> None:
    router.post(f"{prefix(kind)}/character_performance").respond(status, json=body)
    with pytest.raises(base.Rejected) as caught:
        run(make(kind).submit(JOB))
    assert caught.value.failure_code == code
    assert body["error"] in caught.value.message


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_network_failures_are_transient(kind, router, exc) -> None:
    router.get(f"{prefix(kind)}/tasks/{TID}").mock(side_effect=exc)
    with pytest.raises(base.Transient):
        run(make(kind).poll(TID, age=100))


def test_one_task_is_never_polled_twice_within_five_seconds(kind, router) -> None:
    route = router.get(f"{prefix(kind)}/tasks/{TID}").respond(200, json={"id": TID, "status": "RUNNING"})
    provider = make(kind)

    async def twice() -> None:
        await provider.poll(TID, age=100)
        with pytest.raises(base.Transient) as caught:
            await provider.poll(TID, age=100)
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 5

    run(twice())
    assert route.call_count == 1


def test_cancel_deletes_and_treats_unknown_as_done(kind, router) -> None:
    route = router.delete(f"{prefix(kind)}/tasks/{TID}").respond(204)
    run(make(kind).cancel(TID))
    assert route.call_count == 1
    router.delete(f"{prefix(kind)}/tasks/gone").respond(404, json={"error": "Task not found"})
    run(make(kind).cancel("gone"))


def test_cancel_failure_is_transient(kind, router) -> None:
    router.delete(f"{prefix(kind)}/tasks/{TID}").respond(503)
    with pytest.raises(base.Transient):
        run(make(kind).cancel(TID))


ORG = {
    "creditBalance": 1000,
    "tier": {
        "maxMonthlyCreditSpend": 1,
        "models": {"act_two": {"maxConcurrentGenerations": 3, "maxDailyGenerations": 50}},
    },
    "usage": {"models": {"act_two": {"dailyGenerations": 0}}},
}


def test_capacity_comes_from_the_organization_and_is_cached(kind, router) -> None:
    route = router.get(f"{prefix(kind)}/organization").respond(200, json=ORG)
    provider = make(kind)

    async def twice() -> tuple[Any, Any]:
        return await provider.capacity(), await provider.capacity()

    assert run(twice()) == (3, 3)
    assert route.call_count == 1


def test_capacity_setting_wins_and_missing_organization_means_unknown(kind, router) -> None:
    route = router.get(f"{prefix(kind)}/organization").respond(404, json={"error": "no"})
    assert run(make(kind, max_concurrency=7).capacity()) == 7
    assert route.call_count == 0
    assert run(make(kind).capacity()) is None


def test_upload_is_runways_two_step_flow(kind, router, tmp_path) -> None:
    path = tmp_path / "character.png"
    path.write_bytes(b"\x89PNG fake")
    slot = router.post(f"{prefix(kind)}/uploads").respond(
        200,
        json={
            "uploadUrl": "https://bucket.example.com/up",
            "fields": {"key": "k1", "policy": "p"},
            "runwayUri": "runway://u/1",
        },
    )
    bucket = router.post("https://bucket.example.com/up").respond(204)
    assert run(make(kind).upload(path, "character.png")) == "runway://u/1"
    assert orjson.loads(slot.calls.last.request.content) == {"filename": "character.png", "type": "ephemeral"}
    sent = bucket.calls.last.request
    assert "authorization" not in sent.headers
    assert b'name="key"' in sent.content and b"k1" in sent.content
    assert b'name="file"; filename="character.png"' in sent.content and b"PNG fake" in sent.content


# -- runway only ---------------------------------------------------------------------------
def test_runway_unknown_task_is_reported(router) -> None:
    router.get(f"/v1/tasks/{TID}").respond(404, json={"error": "Task not found"})
    with pytest.raises(base.UnknownTask):
        run(make("runway").poll(TID, age=1))


# -- CometAPI quirks -------------------------------------------------------------------------
def test_cometapi_fresh_task_reported_missing_is_still_pending(router) -> None:
    router.get(f"/runwayml/v1/tasks/{TID}").respond(
        404, json={"code": "404", "message": "task does not exist"}
    )
    assert run(make("cometapi").poll(TID, age=3)) == base.Status("PENDING")


def test_cometapi_wrapped_task_does_not_exist_with_200_is_pending_while_fresh(router) -> None:
    router.get(f"/runwayml/v1/tasks/{TID}").respond(
        200, json={"code": 500, "message": "task does not exist", "data": None}
    )
    assert run(make("cometapi").poll(TID, age=3)) == base.Status("PENDING")


def test_cometapi_task_missing_after_the_grace_window_is_unknown(router) -> None:
    router.get(f"/runwayml/v1/tasks/{TID}").respond(404, json={"message": "task does not exist"})
    with pytest.raises(base.UnknownTask):
        run(make("cometapi").poll(TID, age=31))


def test_cometapi_envelopes_are_unwrapped(router) -> None:
    router.post("/runwayml/v1/character_performance").respond(
        200, json={"code": "success", "message": "", "data": {"id": TID}}
    )
    router.get(f"/runwayml/v1/tasks/{TID}").respond(
        200,
        json={
            "code": 200,
            "message": "ok",
            "data": {"id": TID, "status": "SUCCEEDED", "output": ["https://c/o.mp4"]},
        },
    )
    provider = make("cometapi")
    assert run(provider.submit(JOB)) == TID
    assert run(provider.poll(TID, age=100)) == base.Status("SUCCEEDED", output=("https://c/o.mp4",))


def test_cometapi_wrapped_error_without_task_is_transient(router) -> None:
    router.get(f"/runwayml/v1/tasks/{TID}").respond(
        200, json={"code": 500, "message": "upstream busy", "data": {}}
    )
    with pytest.raises(base.Transient):
        run(make("cometapi").poll(TID, age=100))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({"retry-after": email.utils.formatdate(1_000 + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(1_000 - 30, usegmt=True)}, 0.0),
    ],
)
def test_parse_retry_after(headers, expected) -> None:
    got = runway.parse_retry_after(headers, 1_000.0)
    assert got == (pytest.approx(expected, abs=1.0) if expected is not None else None)
