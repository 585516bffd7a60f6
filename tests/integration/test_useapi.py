"""The useapi.net-style front: each documented request shape replayed against Callboard."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AccountFactory
from tests.support import MEDIA

PHOTO = (MEDIA / "character_photo.jpg").read_bytes()
DRIVING = (MEDIA / "driving_short.mp4").read_bytes()


def h(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture
def key(make_account: AccountFactory) -> str:
    return make_account("useapi-user", max_jobs=5)[1]


def upload(client: Any, key: str, data: bytes, name: str, ctype: str) -> dict[str, Any]:
    res = client.post(
        f"/v1/runwayml/assets/?name={name}", content=data, headers=h(key, **{"Content-Type": ctype})
    )
    assert res.status_code == 200, res.text
    return res.json()


@pytest.fixture
def assets(client: Any, key: str) -> tuple[str, str]:
    character = upload(client, key, PHOTO, "hero.jpg", "image/jpeg")
    driving = upload(client, key, DRIVING, "take.mp4", "video/mp4")
    assert character["mediaType"] == "image" and driving["mediaType"] == "video"
    return driving["assetId"], character["assetId"]


def test_assets_upload_list_filter_delete(client: Any, key: str, assets: tuple[str, str]) -> None:
    driving, character = assets
    listed = client.get("/v1/runwayml/assets/", headers=h(key)).json()["assets"]
    assert {a["assetId"] for a in listed} == {driving, character}
    videos = client.get("/v1/runwayml/assets/?mediaType=video", headers=h(key)).json()["assets"]
    assert [a["assetId"] for a in videos] == [driving]
    assert videos[0]["metadata"]["duration"] == pytest.approx(8.3, abs=0.2)
    assert client.delete(f"/v1/runwayml/assets/{character}", headers=h(key)).status_code == 204
    gone = client.delete(f"/v1/runwayml/assets/{character}", headers=h(key))
    assert gone.status_code == 404 and gone.json() == {"error": "Asset not found", "code": 404}


def test_asset_rejections(client: Any, key: str) -> None:
    no_name = client.post(
        "/v1/runwayml/assets/", content=PHOTO, headers=h(key, **{"Content-Type": "image/jpeg"})
    )
    assert no_name.status_code == 400 and no_name.json()["field"] == "name"
    junk = client.post("/v1/runwayml/assets/?name=x.mp4", content=b"not a video " * 100, headers=h(key))
    assert junk.status_code == 400 and junk.json()["code"] == 400 and junk.json()["field"] == "body"
    tiny = client.post("/v1/runwayml/assets/?name=x.jpg", content=b"x" * 10, headers=h(key))
    assert tiny.status_code == 400 and "512" in tiny.json()["error"]


def test_act_two_json_maps_fields_onto_a_runway_task(client: Any, key: str, assets: tuple[str, str]) -> None:
    driving, character = assets
    res = client.post(
        "/v1/runwayml/gen4/act-two",
        json={
            "driving_assetId": driving,
            "character_assetId": character,
            "aspect_ratio": "9:16",
            "body_control": False,
            "expression_intensity": 5,
            "seed": 77,
            "exploreMode": True,
            "replyUrl": "https://hooks.example.com/cb",
            "replyRef": "ref-1",
            "maxJobs": 3,
        },
        headers=h(key),
    )
    assert res.status_code == 200, res.text
    task = res.json()
    assert task["status"] == "PENDING" and task["taskId"] == task["id"]
    assert task["options"] == {
        "driving_assetId": driving,
        "character_assetId": character,
        "aspect_ratio": "9:16",
        "body_control": False,
        "expression_intensity": 5,
        "seed": 77,
    }
    assert task["replyRef"] == "ref-1" and task["artifacts"] == []
    runway = client.get(f"/v1/tasks/{task['taskId']}", headers=h(key)).json()
    assert runway["status"] == "PENDING"
    assert runway["estimatedCost"]["credits"] == 40.0  # 8.3 s of reference at 5 credits/s
    again = client.get(f"/v1/runwayml/tasks/{task['taskId']}", headers=h(key)).json()
    assert again["options"]["aspect_ratio"] == "9:16"


def test_act_two_defaults_and_multipart_body(client: Any, key: str, assets: tuple[str, str]) -> None:
    driving, character = assets
    fields = {"driving_assetId": driving, "character_assetId": character, "expression_intensity": "2"}
    boundary = "----callboard-test"
    multipart = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in fields.items()
        )
        + f"--{boundary}--\r\n"
    )
    res = client.post(
        "/v1/runwayml/gen4/act-two",
        content=multipart.encode(),
        headers=h(key, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}),
    )
    assert res.status_code == 200, res.text
    options = res.json()["options"]
    assert (
        options["aspect_ratio"] == "16:9"
        and options["body_control"] is True
        and options["expression_intensity"] == 2
    )
    form = client.post("/v1/runwayml/gen4/act-two", data={**fields, "body_control": "false"}, headers=h(key))
    assert form.status_code == 200, form.text
    assert form.json()["options"]["body_control"] is False


@pytest.mark.parametrize("path", ["/v1/runwayml/gen3/actone", "/v1/runwayml/gen3turbo/actone"])
def test_act_one_motion_multiplier_and_orientation(
    client: Any, key: str, assets: tuple[str, str], path: str
) -> None:
    driving, character = assets
    res = client.post(
        path,
        json={
            "driving_assetId": driving,
            "character_assetId": character,
            "motion_multiplier": 1,
            "aspect_ratio": "portrait",
        },
        headers=h(key),
    )
    assert res.status_code == 200, res.text
    assert res.json()["options"]["expression_intensity"] == 1
    assert res.json()["options"]["aspect_ratio"] == "9:16"
    legacy = client.post(path, json={"video_assetId": driving, "image_assetId": character}, headers=h(key))
    assert legacy.status_code == 200 and legacy.json()["options"]["aspect_ratio"] == "16:9"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "driving_assetId"),
        ({"driving_assetId": "D"}, "character_assetId"),
        ({"driving_assetId": "ast_0000000000000000", "character_assetId": "C"}, "driving_assetId"),
        ({"driving_assetId": "D", "character_assetId": "C", "aspect_ratio": "2:1"}, "aspect_ratio"),
        (
            {"driving_assetId": "D", "character_assetId": "C", "expression_intensity": 9},
            "expression_intensity",
        ),
        ({"driving_assetId": "D", "character_assetId": "C", "body_control": "yes"}, "body_control"),
        ({"driving_assetId": "D", "character_assetId": "C", "maxJobs": 11}, "maxJobs"),
        ({"driving_assetId": "D", "character_assetId": "C", "replyRef": "r" * 1025}, "replyRef"),
        ({"driving_assetId": "D", "character_assetId": "C", "prompt": "x"}, "prompt"),
    ],
)
def test_act_two_errors_use_the_useapi_shape(
    client: Any, key: str, assets: tuple[str, str], body: dict[str, Any], field: str
) -> None:
    driving, character = assets
    body = {k: (driving if v == "D" else character if v == "C" else v) for k, v in body.items()}
    res = client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key))
    assert res.status_code == 400
    assert res.json()["code"] == 400 and res.json()["field"] == field and field in res.json()["error"]


def test_image_as_driving_asset_is_refused(client: Any, key: str, assets: tuple[str, str]) -> None:
    _, character = assets
    res = client.post(
        "/v1/runwayml/gen4/act-two",
        json={"driving_assetId": character, "character_assetId": character},
        headers=h(key),
    )
    assert res.status_code == 400 and "video" in res.json()["error"]


def test_max_jobs_answers_429_listing_running_tasks(client: Any, key: str, assets: tuple[str, str]) -> None:
    driving, character = assets
    body = {"driving_assetId": driving, "character_assetId": character, "maxJobs": 2}
    first = client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key)).json()["taskId"]
    second = client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key)).json()["taskId"]
    busy = client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key))
    assert busy.status_code == 429
    assert busy.json()["code"] == 429 and busy.json()["runningTasks"] == [first, second]
    assert "maxJobs" in busy.json()["error"]
    client.delete(f"/v1/tasks/{first}", headers=h(key))
    assert client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key)).status_code == 200


def test_tasks_list_with_statuses_offset_limit(
    client: Any, key: str, assets: tuple[str, str], clock: Any
) -> None:
    driving, character = assets
    body = {"driving_assetId": driving, "character_assetId": character}
    ids = []
    for _ in range(3):
        ids.append(client.post("/v1/runwayml/gen4/act-two", json=body, headers=h(key)).json()["taskId"])
        clock.advance(1)
    client.delete(f"/v1/tasks/{ids[0]}", headers=h(key))
    pending = client.get("/v1/runwayml/tasks/?offset=0&limit=10&statuses=PENDING", headers=h(key)).json()
    assert {t["taskId"] for t in pending} == set(ids[1:])
    page = client.get("/v1/runwayml/tasks/?offset=1&limit=1", headers=h(key)).json()
    assert [t["taskId"] for t in page] == [ids[1]]  # newest first: ids[2], ids[1], ids[0]
    bad = client.get("/v1/runwayml/tasks/?statuses=DONE", headers=h(key))
    assert bad.status_code == 400 and bad.json()["code"] == 400


def test_other_accounts_get_404_in_useapi_shape(
    client: Any, key: str, assets: tuple[str, str], make_account: AccountFactory
) -> None:
    driving, character = assets
    task_id = client.post(
        "/v1/runwayml/gen4/act-two",
        json={"driving_assetId": driving, "character_assetId": character},
        headers=h(key),
    ).json()["taskId"]
    _, other = make_account("other")
    res = client.get(f"/v1/runwayml/tasks/{task_id}", headers=h(other))
    assert res.status_code == 404 and res.json()["code"] == 404
    stolen = client.post(
        "/v1/runwayml/gen4/act-two",
        json={"driving_assetId": driving, "character_assetId": character},
        headers=h(other),
    )
    assert stolen.status_code == 400 and stolen.json()["field"] == "driving_assetId"
    assert client.get("/v1/runwayml/assets/", headers=h(other)).json()["assets"] == []
    assert client.get("/v1/runwayml/tasks/x", headers={}).json()["code"] == 401
