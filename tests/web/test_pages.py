"""Dashboard pages with the Starlette test client: lists, task page, playground, webhooks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from service import settings as settings_mod
from service import tasks
from service.web import render, thumbs
from service.webhooks import delivery
from tests.support import MEDIA

BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/c.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
}


def _create(client: Any, key: str, **extra: Any) -> str:
    answer = client.post(
        "/v1/character_performance", headers={"Authorization": f"Bearer {key}"}, json={**BODY, **extra}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def test_the_task_list_is_newest_first_and_filters_by_status(signed_in: Any, clock: Any) -> None:
    client = signed_in.client
    first = _create(client, signed_in.key)
    clock.advance(5)
    second = _create(client, signed_in.key, replyRef="order-77")
    client.post(f"/ui/tasks/{first}/cancel", data={"csrf": signed_in.csrf})
    page = client.get("/ui/tasks").text
    rows = re.findall(r'<tr data-task="([^"]+)"', page)
    assert rows == [second, first]
    assert "order-77" in page
    cancelled = re.findall(r'<tr data-task="([^"]+)"', client.get("/ui/tasks?status=CANCELLED").text)
    assert cancelled == [first]
    bad = client.get("/ui/tasks?status=DONE")
    assert bad.status_code == 400 and "Unknown status" in bad.text


def test_another_tenants_task_is_a_404_page(signed_in: Any, make_account: Any) -> None:
    _, other_key = make_account("someone-else")
    foreign = _create(signed_in.client, other_key)
    for path in (
        f"/ui/tasks/{foreign}",
        f"/ui/tasks/{foreign}/inputs/character",
        f"/ui/tasks/{foreign}/thumbnail.jpg",
    ):
        answer = signed_in.client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
    cancel = signed_in.client.post(f"/ui/tasks/{foreign}/cancel", data={"csrf": signed_in.csrf})
    assert cancel.status_code == 404


def test_the_task_page_shows_inputs_timeline_and_deliveries(signed_in: Any) -> None:
    client = signed_in.client
    task_id = _create(client, signed_in.key, replyUrl="https://hooks.example.com/cb")
    page = client.get(f"/ui/tasks/{task_id}")
    assert page.status_code == 200
    assert "task.created" in page.text
    assert "https://hooks.example.com/cb" in page.text
    assert f'data-task-stream="{task_id}"' in page.text
    assert 'src="/ui/tasks/' in page.text
    https_input = client.get(f"/ui/tasks/{task_id}/inputs/character")
    assert https_input.status_code == 302 and https_input.headers["location"] == BODY["character"]["uri"]
    assert client.get(f"/ui/tasks/{task_id}/inputs/other").status_code == 404


def test_the_playground_runs_an_example_with_the_chosen_options(signed_in: Any, db: Any) -> None:
    client = signed_in.client
    form = client.get("/ui/playground")
    assert "character_photo.jpg" in form.text and "driving_short.mp4" in form.text
    answer = client.post(
        "/ui/playground",
        data={
            "csrf": signed_in.csrf,
            "character_example": "character_photo.jpg",
            "reference_example": "driving_short.mp4",
            "ratio": "960:960",
            "expressionIntensity": "5",
            "seed": "7",
        },
    )
    assert answer.status_code == 303
    task_id = answer.headers["location"].split("task=")[1]
    spec = db.read_sync(lambda conn: tasks.get_spec(conn, task_id))
    assert (spec["ratio"], spec["expressionIntensity"], spec["seed"], spec["bodyControl"]) == (
        "960:960",
        5,
        7,
        False,
    )
    result = client.get(answer.headers["location"])
    assert f'data-task-stream="{task_id}"' in result.text


def test_the_playground_accepts_uploaded_files(signed_in: Any) -> None:
    client = signed_in.client
    with (MEDIA / "character_photo.jpg").open("rb") as char, (MEDIA / "driving_short.mp4").open("rb") as ref:
        answer = client.post(
            "/ui/playground",
            data={"csrf": signed_in.csrf, "bodyControl": "on"},
            files={
                "character_file": ("me.jpg", char, "image/jpeg"),
                "reference_file": ("take1.mp4", ref, "video/mp4"),
            },
        )
    assert answer.status_code == 303


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [
        ({"reference_example": "driving_short.mp4"}, None, "Character: upload a file or pick an example"),
        (
            {"character_example": "character_photo.jpg"},
            None,
            "Driving clip: upload a file or pick an example",
        ),
        (
            {"character_example": "nope.jpg", "reference_example": "driving_short.mp4"},
            None,
            "No example named",
        ),
        (
            {"reference_example": "driving_short.mp4"},
            {"character_file": ("notes.txt", b"hello", "text/plain")},
            "upload a JPEG, PNG or WebP image",
        ),
        (
            {
                "character_example": "character_photo.jpg",
                "reference_example": "driving_short.mp4",
                "seed": "-1",
            },
            None,
            "Seed: a whole number",
        ),
        (
            {
                "character_example": "character_photo.jpg",
                "reference_example": "character_video.mp4",
                "ratio": "1:1",
            },
            None,
            "ratio: must be one of",
        ),
    ],
)
def test_bad_playground_input_is_a_400_naming_the_field(
    signed_in: Any, data: dict[str, str], files: Any, message: str
) -> None:
    answer = signed_in.client.post("/ui/playground", data={"csrf": signed_in.csrf, **data}, files=files)
    assert answer.status_code == 400
    assert message in answer.text
    assert 'role="alert"' in answer.text


def test_a_failed_delivery_is_resent_from_the_page(
    signed_in: Any, db: Any, rt: Any, web_settings: Any
) -> None:
    client = signed_in.client
    created = client.post("/ui/webhooks", data={"csrf": signed_in.csrf, "url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 200 and "whsec_" in created.text
    endpoint_id = re.search(r'action="/ui/webhooks/([^/"]+)/test"', created.text).group(1)
    task_id = _create(client, signed_in.key)
    one_try = type(rt)(
        settings=web_settings.replace(webhook_schedule=(0.0,)), clock=rt.clock, links=rt.links, allow=rt.allow
    )

    async def deliver() -> None:
        job = delivery.DeliveryJob(db, one_try, ident="test")
        while await job.run_once():
            pass
        await job.aclose()

    asyncio.run(deliver())  # port 9 refuses: the only attempt fails
    page = client.get(f"/ui/tasks/{task_id}").text
    delivery_id = re.search(r'action="/ui/deliveries/([^/"]+)/retry"', page).group(1)
    assert client.get("/ui/webhooks").text.count(delivery_id) >= 1
    detail = client.get(f"/ui/deliveries/{delivery_id}").text
    assert "task.created" in detail and "webhook-id: " + delivery_id in detail
    resent = client.post(f"/ui/deliveries/{delivery_id}/retry", data={"csrf": signed_in.csrf})
    assert resent.status_code == 303
    shown = client.get(resent.headers["location"]).text
    assert "queued to be sent again" in shown and "badge-d-pending" in shown
    endpoint_page = client.get(f"/ui/webhooks/{endpoint_id}").text
    assert "Failure streak" in endpoint_page


def test_endpoint_buttons_reveal_rotate_test_and_disable(signed_in: Any) -> None:
    client, csrf = signed_in.client, signed_in.csrf
    created = client.post("/ui/webhooks", data={"csrf": csrf, "url": "https://hooks.example.com/x"})
    first = re.search(r"(whsec_[A-Za-z0-9+/=]+)", created.text).group(1)
    endpoint_id = re.search(r'action="/ui/webhooks/([^/"]+)/test"', created.text).group(1)
    base = f"/ui/webhooks/{endpoint_id}"
    assert first not in client.get(base).text
    assert first in client.post(f"{base}/secret", data={"csrf": csrf}).text
    rotated = client.post(f"{base}/rotate", data={"csrf": csrf}).text
    assert "whsec_" in rotated and first not in rotated
    test = client.post(f"{base}/test", data={"csrf": csrf})
    assert test.status_code == 303 and "webhook.test" in client.get(base).text
    recover = client.post(f"{base}/recover", data={"csrf": csrf, "window": "24h"})
    assert "queued to be sent again" in recover.text
    assert client.post(f"{base}/recover", data={"csrf": csrf, "window": "forever"}).status_code == 400
    client.post(f"{base}/disable", data={"csrf": csrf})
    assert "disabled by the account" in client.get("/ui/webhooks").text
    assert client.post(f"{base}/delete", data={"csrf": csrf}).status_code == 303
    assert client.get(base).status_code == 404


def test_a_private_endpoint_url_is_refused_on_the_form(signed_in: Any, web_settings: Any) -> None:
    answer = signed_in.client.post(
        "/ui/webhooks", data={"csrf": signed_in.csrf, "url": "https://user:pw@hooks.example.com/x"}
    )
    assert answer.status_code == 400 and 'role="alert"' in answer.text


def test_assets_are_served_by_callboard_itself(signed_in: Any) -> None:
    page = signed_in.client.get("/ui/tasks").text
    for href in re.findall(r'(?:href|src)="(/ui/static/[^"?]+)', page):
        assert signed_in.client.get(href).status_code == 200
    assert not re.search(r'(?:href|src)="(?:https?:)?//', page)


@pytest.mark.parametrize("name", ["character_photo.jpg", "driving_short.mp4", "character_video.mp4"])
def test_a_thumbnail_is_a_small_jpeg_of_an_image_or_a_videos_first_frame(name: str) -> None:
    data = thumbs.make(MEDIA / name)
    assert data is not None and data[:3] == b"\xff\xd8\xff" and len(data) < 60_000


def test_a_video_stored_turned_gets_an_upright_thumbnail(tmp_path: Path) -> None:
    """A phone's portrait video stores its frames turned, with a display matrix."""
    import cv2
    import numpy as np

    from tests.engine import clips

    turned = clips.turned(MEDIA / "character_video.mp4", tmp_path / "turned.mp4", seconds=0.2)
    data = thumbs.make(turned)
    assert data is not None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (135, 240)  # as shown: 1280x720, not the stored 720x1280
    original = thumbs.make(MEDIA / "character_video.mp4")
    assert original is not None
    expected = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(image.astype(int) - expected).mean() < 8  # upright, not upside down


def test_an_undecodable_file_has_no_thumbnail(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not media" * 100)
    assert thumbs.make(junk) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (-1, "0 ms"),
        (0.25, "250 ms"),
        (12.44, "12.4 s"),
        (185, "3 min 05 s"),
        (7800, "2 h 10 min"),
    ],
)
def test_durations_read_naturally(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_the_examples_folder_setting_must_exist(tmp_path: Path) -> None:
    env = {"CALLBOARD_DATA_DIR": str(tmp_path / "d"), "CALLBOARD_SECRET_KEY": "k" * 20}
    assert settings_mod.load(env).examples_dir is None
    assert settings_mod.load({**env, "CALLBOARD_EXAMPLES_DIR": str(MEDIA)}).examples_dir == MEDIA.resolve()
    with pytest.raises(settings_mod.SettingsError, match="CALLBOARD_EXAMPLES_DIR"):
        settings_mod.load({**env, "CALLBOARD_EXAMPLES_DIR": str(tmp_path / "missing")})
