"""Every validation rule of the create body, as a table: each row fails if its rule is removed."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from service import errors, netguard, taskspec

IMG = "https://example.com/character.jpg"
VID = "https://example.com/reference.mp4"


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "act_two",
        "character": {"type": "image", "uri": IMG},
        "reference": {"type": "video", "uri": VID},
    }
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def data_uri(media_type: str, size: int) -> str:
    return f"data:{media_type};base64," + base64.b64encode(b"\0" * size).decode()


def test_minimal_body_gets_defaults_and_a_seed() -> None:
    spec = taskspec.parse(body(), random_seed=42)
    assert spec.model == "act_two"
    assert spec.ratio == "1280:720"
    assert spec.expression_intensity == 3
    assert spec.body_control is True
    assert spec.seed == 42
    assert spec.public_figure_threshold == "auto"
    assert spec.to_json()["seed"] == 42


def test_random_seed_is_drawn_when_absent() -> None:
    seeds = {taskspec.parse(body()).seed for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s <= taskspec.SEED_MAX for s in seeds)


def test_cometapi_model_alias_is_accepted() -> None:
    assert taskspec.parse(body(model="runwayml-character-performance")).model == "act_two"


def test_full_body_round_trips() -> None:
    spec = taskspec.parse(
        body(
            character={"type": "video", "uri": VID},
            bodyControl=False,
            expressionIntensity=5,
            ratio="1584:672",
            seed=4294967295,
            contentModeration={"publicFigureThreshold": "low"},
            replyUrl="https://hooks.example.com/cb",
            replyRef="order-17 ✓",
            webhookEvents=["task.succeeded", "task.progress"],
        )
    )
    assert spec.character.type == "video"
    assert (spec.body_control, spec.expression_intensity, spec.ratio, spec.seed) == (
        False,
        5,
        "1584:672",
        4294967295,
    )
    assert spec.public_figure_threshold == "low"
    assert spec.reply_ref == "order-17 ✓"
    assert spec.webhook_events == ("task.succeeded", "task.progress")


@pytest.mark.parametrize(
    ("the_body", "field", "fragment"),
    [
        ([1, 2], "body", "JSON object"),
        (body(model=...), "model", "required"),
        (body(model="gen4_turbo"), "model", "act_two"),
        (body(character=...), "character", "required"),
        (body(reference=...), "reference", "required"),
        (body(character="https://example.com/x.jpg"), "character", "object"),
        (body(character={"type": "audio", "uri": IMG}), "character.type", "image"),
        (body(reference={"type": "image", "uri": IMG}), "reference.type", "video"),
        (body(character={"type": "image"}), "character.uri", "required"),
        (body(character={"type": "image", "uri": 5}), "character.uri", "string"),
        (body(character={"type": "image", "uri": IMG, "x": 1}), "character.x", "recognised"),
        (body(character={"type": "image", "uri": "http://example.com/a.jpg"}), "character.uri", "HTTPS"),
        (body(character={"type": "image", "uri": "ftp://example.com/a.jpg"}), "character.uri", "HTTPS"),
        (body(character={"type": "image", "uri": "https://a.co"}), "character.uri", "13 to 2048"),
        (
            body(character={"type": "image", "uri": "https://example.com/" + "a" * 2040}),
            "character.uri",
            "13 to 2048",
        ),
        (
            body(character={"type": "image", "uri": "https://93.184.216.34/a.jpg"}),
            "character.uri",
            "not an IP",
        ),
        (
            body(character={"type": "image", "uri": "https://[2606:2800::1]/a.jpg"}),
            "character.uri",
            "not an IP",
        ),
        (body(character={"type": "image", "uri": "https://2130706433/a.jpg"}), "character.uri", "not an IP"),
        (body(character={"type": "image", "uri": "https://localhost/a.jpg"}), "character.uri", "domain name"),
        (
            body(character={"type": "image", "uri": "https://user:pw@example.com/a.jpg"}),
            "character.uri",
            "credentials",
        ),
        (body(character={"type": "image", "uri": "runway://"}), "character.uri", "runway://"),
        (body(character={"type": "image", "uri": "data:image/png,abc"}), "character.uri", "base64"),
        (body(character={"type": "image", "uri": "data:;base64,AAAA"}), "character.uri", "data URI"),
        (
            body(character={"type": "image", "uri": "data:image/gif;base64,AAAA"}),
            "character.uri",
            "image/gif",
        ),
        (
            body(character={"type": "image", "uri": "data:video/mp4;base64,AAAA"}),
            "character.uri",
            "video/mp4",
        ),
        (
            body(reference={"type": "video", "uri": "data:image/png;base64,AAAA"}),
            "reference.uri",
            "image/png",
        ),
        (body(character={"type": "image", "uri": "data:image/png;base64,@@@@"}), "character.uri", "base64"),
        (body(character={"type": "image", "uri": "data:image/png;base64,"}), "character.uri", "empty"),
        (
            body(character={"type": "image", "uri": data_uri("image/png", 5 * 1024 * 1024 + 10)}),
            "character.uri",
            "5 MB",
        ),
        (
            body(reference={"type": "video", "uri": data_uri("video/mp4", 16 * 1024 * 1024 + 10)}),
            "reference.uri",
            "16 MB",
        ),
        (body(bodyControl="yes"), "bodyControl", "true or false"),
        (body(bodyControl=1), "bodyControl", "true or false"),
        (body(expressionIntensity=0), "expressionIntensity", "1 to 5"),
        (body(expressionIntensity=6), "expressionIntensity", "1 to 5"),
        (body(expressionIntensity=2.5), "expressionIntensity", "1 to 5"),
        (body(expressionIntensity=True), "expressionIntensity", "1 to 5"),
        (body(ratio="16:9"), "ratio", "1280:720"),
        (body(seed=-1), "seed", "0 to 4294967295"),
        (body(seed=4294967296), "seed", "0 to 4294967295"),
        (body(seed="7"), "seed", "0 to 4294967295"),
        (body(contentModeration="low"), "contentModeration", "object"),
        (
            body(contentModeration={"publicFigureThreshold": "high"}),
            "contentModeration.publicFigureThreshold",
            "auto",
        ),
        (body(contentModeration={"other": 1}), "contentModeration.other", "recognised"),
        (body(promptText="hi"), "promptText", "recognised"),
        (body(replyUrl="https://hooks.example.com/" + "a" * 1024), "replyUrl", "1024"),
        (body(replyUrl=17), "replyUrl", "URL"),
        (body(replyUrl="ftp://hooks.example.com/x"), "replyUrl", "HTTPS or HTTP"),
        (body(replyUrl="http://10.0.0.5/hook"), "replyUrl", "private"),
        (body(replyUrl="http://169.254.169.254/latest"), "replyUrl", "link-local"),
        (body(replyUrl="http://[::ffff:127.0.0.1]/x"), "replyUrl", "loopback"),
        (body(replyUrl="http://0x7f000001/x"), "replyUrl", "loopback"),
        (body(replyUrl="https://u:p@hooks.example.com/x"), "replyUrl", "credentials"),
        (body(replyRef="r" * 1025), "replyRef", "1024"),
        (body(replyRef=5), "replyRef", "string"),
        (body(webhookEvents="task.succeeded"), "webhookEvents", "list"),
        (body(webhookEvents=["task.exploded"]), "webhookEvents", "unknown event type"),
    ],
)
def test_invalid_bodies_name_the_field(the_body: Any, field: str, fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        taskspec.parse(copy.deepcopy(the_body))
    assert info.value.field == field
    assert fragment in info.value.message
    assert info.value.status == 400


def test_accepted_input_forms() -> None:
    png = data_uri("image/png", 100)
    spec = taskspec.parse(
        body(
            character={"type": "image", "uri": png},
            reference={"type": "video", "uri": "runway://uploads/abc123/clip.mp4"},
        )
    )
    assert (
        spec.character.scheme == "data"
        and spec.character.size == 100
        and spec.character.media_type == "image/png"
    )
    assert spec.reference.scheme == "runway"


def test_data_uri_at_the_limit_is_accepted() -> None:
    spec = taskspec.parse(body(character={"type": "image", "uri": data_uri("image/jpeg", 5 * 1024 * 1024)}))
    assert spec.character.size == 5 * 1024 * 1024


def test_private_reply_url_allowed_by_allowlist() -> None:
    allow = netguard.Allowlist(["127.0.0.1"])
    spec = taskspec.parse(body(replyUrl="http://127.0.0.1:9000/hook"), allow=allow)
    assert spec.reply_url == "http://127.0.0.1:9000/hook"
