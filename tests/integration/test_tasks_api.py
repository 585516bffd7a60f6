"""The Runway-compatible task routes over HTTP (Starlette test client)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
import sqlalchemy as sa

from service import models as m
from service.db import Database
from tests.conftest import AccountFactory
from tests.support import FakeClock

IMG = "https://example.com/character.jpg"
VID = "https://example.com/reference.mp4"
BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": IMG},
    "reference": {"type": "video", "uri": VID},
}


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Runway-Version": "2024-11-06", **extra}


@pytest.fixture
def key(make_account: AccountFactory) -> str:
    return make_account("alice")[1]


def create(client: Any, key: str, body: Any = None, **headers: str) -> Any:
    return client.post(
        "/v1/character_performance", json=BODY if body is None else body, headers=auth(key, **headers)
    )


def test_create_then_retrieve_shows_runway_pending_shape(client: Any, key: str, clock: FakeClock) -> None:
    created = create(client, key)
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {"id", "estimatedCost"}
    assert body["estimatedCost"] == {"credits": 150.0}
    task = client.get(f"/v1/tasks/{body['id']}", headers=auth(key)).json()
    assert task["status"] == "PENDING"
    assert task["id"] == body["id"]
    assert task["createdAt"].endswith("Z") and len(task["createdAt"]) == len("2026-11-22T19:49:32.335Z")
    assert task["estimatedCost"] == {"credits": 150.0}
    assert "output" not in task and "cost" not in task


def test_create_with_reply_url_returns_secret_and_echoes_reply_ref(client: Any, key: str) -> None:
    ref = 'café "ref" \u2603 <x>'
    res = create(client, key, {**BODY, "replyUrl": "https://hooks.example.com/cb", "replyRef": ref})
    assert res.status_code == 200
    assert res.json()["replySecret"].startswith("whsec_")
    task = client.get(f"/v1/tasks/{res.json()['id']}", headers=auth(key)).json()
    assert task["replyRef"] == ref


def test_delete_cancels_pending_then_deletes_finished(client: Any, key: str, db: Database) -> None:
    task_id = create(client, key).json()["id"]
    assert client.delete(f"/v1/tasks/{task_id}", headers=auth(key)).status_code == 204
    task = client.get(f"/v1/tasks/{task_id}", headers=auth(key)).json()
    assert task["status"] == "CANCELLED"
    assert task["cost"] == {"credits": 0}
    types = db.read_sync(
        lambda c: (
            c.execute(
                sa.select(m.events.c.type).where(m.events.c.task_id == task_id).order_by(m.events.c.sequence)
            )
            .scalars()
            .all()
        )
    )
    assert types == ["task.created", "task.cancelled"]
    assert client.delete(f"/v1/tasks/{task_id}", headers=auth(key)).status_code == 204
    gone = client.get(f"/v1/tasks/{task_id}", headers=auth(key))
    assert gone.status_code == 404
    assert gone.json()["error"] == "Task not found"
    assert client.delete(f"/v1/tasks/{task_id}", headers=auth(key)).status_code == 404


def test_auth_errors(client: Any, key: str, db: Database, clock: FakeClock) -> None:
    missing = client.post("/v1/character_performance", json=BODY)
    assert missing.status_code == 401 and "Missing API key" in missing.json()["error"]
    wrong = client.get("/v1/tasks", headers={"Authorization": "Bearer cb_nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_api_key"
    basic = client.get("/v1/tasks", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    from service import accounts

    db.write_sync(lambda c: accounts.revoke_key(c, key[:10], clock.now()))
    revoked = client.get("/v1/tasks", headers=auth(key))
    assert revoked.status_code == 401


def test_version_header(client: Any, key: str) -> None:
    bad = create(client, key, **{"X-Runway-Version": "2023-01-01"})
    assert bad.status_code == 400
    assert "2024-11-06" in bad.json()["error"]
    assert bad.json()["field"] == "X-Runway-Version"
    no_header = client.post(
        "/v1/character_performance", json=BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert no_header.status_code == 200


def test_validation_errors_are_400_with_field(client: Any, key: str) -> None:
    res = create(client, key, {**BODY, "expressionIntensity": 9})
    assert res.status_code == 400
    assert res.json() == {
        "error": "expressionIntensity: must be an integer from 1 to 5",
        "code": "validation_error",
        "field": "expressionIntensity",
    }


@pytest.mark.parametrize(
    ("raw", "ctype", "status", "fragment"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "empty"),
        (b"[]", "application/json", 400, "JSON object"),
        (b"--x\r\n", "multipart/form-data; boundary=x", 415, "application/json"),
    ],
)
def test_malformed_bodies(client: Any, key: str, raw: bytes, ctype: str, status: int, fragment: str) -> None:
    res = client.post("/v1/character_performance", content=raw, headers=auth(key, **{"Content-Type": ctype}))
    assert res.status_code == status
    assert fragment in res.json()["error"]


def test_oversized_body_is_413(client: Any, key: str, settings: Any) -> None:
    res = client.post(
        "/v1/character_performance",
        content=b"{" + b" " * (settings.max_body_bytes + 10) + b"}",
        headers=auth(key, **{"Content-Type": "application/json"}),
    )
    assert res.status_code == 413


def test_idempotency_same_body_same_task(client: Any, key: str, db: Database) -> None:
    first = create(client, key, **{"Idempotency-Key": "k-1"})
    again = create(client, key, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    count = db.read_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(m.tasks)).scalar_one())
    assert count == 1


def test_idempotency_key_with_different_body_is_422(client: Any, key: str) -> None:
    assert create(client, key, **{"Idempotency-Key": "k-2"}).status_code == 200
    res = create(client, key, {**BODY, "seed": 5}, **{"Idempotency-Key": "k-2"})
    assert res.status_code == 422
    assert res.json()["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_account(client: Any, make_account: AccountFactory, key: str) -> None:
    _, other = make_account("bob")
    a = create(client, key, **{"Idempotency-Key": "shared"}).json()["id"]
    b = create(client, other, **{"Idempotency-Key": "shared"}).json()["id"]
    assert a != b


def test_concurrent_identical_keyed_requests_make_one_task(client: Any, key: str, db: Database) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: create(client, key, **{"Idempotency-Key": "race"}), range(16)))
    assert {r.status_code for r in results} == {200}
    assert len({r.json()["id"] for r in results}) == 1
    count = db.read_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(m.tasks)).scalar_one())
    assert count == 1


def test_tenants_see_only_their_own_tasks(client: Any, make_account: AccountFactory, key: str) -> None:
    _, other = make_account("mallory")
    task_id = create(client, key).json()["id"]
    assert client.get(f"/v1/tasks/{task_id}", headers=auth(other)).status_code == 404
    assert client.delete(f"/v1/tasks/{task_id}", headers=auth(other)).status_code == 404
    assert client.get("/v1/tasks", headers=auth(other)).json()["data"] == []
    assert client.get(f"/v1/tasks/{task_id}", headers=auth(key)).json()["status"] == "PENDING"


def test_list_newest_first_with_status_filter_and_cursor(client: Any, key: str, clock: FakeClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(create(client, key).json()["id"])
        clock.advance(1)
    client.delete(f"/v1/tasks/{ids[1]}", headers=auth(key))
    page1 = client.get("/v1/tasks?limit=2", headers=auth(key)).json()
    assert [t["id"] for t in page1["data"]] == [ids[4], ids[3]]
    page2 = client.get(f"/v1/tasks?limit=2&cursor={page1['nextCursor']}", headers=auth(key)).json()
    assert [t["id"] for t in page2["data"]] == [ids[2], ids[1]]
    page3 = client.get(f"/v1/tasks?limit=2&cursor={page2['nextCursor']}", headers=auth(key)).json()
    assert [t["id"] for t in page3["data"]] == [ids[0]] and page3["nextCursor"] is None
    cancelled = client.get("/v1/tasks?status=CANCELLED", headers=auth(key)).json()["data"]
    assert [t["id"] for t in cancelled] == [ids[1]]
    assert client.get("/v1/tasks?status=DONE", headers=auth(key)).status_code == 400
    assert client.get("/v1/tasks?limit=0", headers=auth(key)).status_code == 400
    assert client.get("/v1/tasks?cursor=@@", headers=auth(key)).status_code == 400


def test_other_runway_resources_are_json_404(client: Any, key: str) -> None:
    for path in ("/v1/image_to_video", "/v1/text_to_image", "/v1/voices"):
        res = client.post(path, json={}, headers=auth(key))
        assert res.status_code == 404
        assert "error" in res.json()


def test_wrong_method_is_json_405(client: Any, key: str) -> None:
    res = client.put("/v1/tasks/abc", headers=auth(key))
    assert res.status_code == 405
    assert res.json()["code"] == "method_not_allowed"


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"status": "ready"}


def test_openapi_document_describes_every_route(client: Any, app: Any) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    from starlette.routing import Route

    for route in app.routes:
        if isinstance(route, Route) and route.path != "/openapi.json":
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                assert method.lower() in doc["paths"][route.path], (method, route.path)


def test_rate_limit_per_key_answers_429_with_retry_after(
    settings: Any, db: Database, clock: FakeClock, make_account: AccountFactory
) -> None:
    from starlette.testclient import TestClient

    from service.api.app import create_app

    app = create_app(
        settings.replace(rate_limit=1.0, rate_burst=2), clock=clock, database=db, embedded_worker=False
    )
    _, key = make_account("busy")
    _, other = make_account("calm")
    with TestClient(app) as client:
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 200
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 200
        limited = client.get("/v1/tasks", headers=auth(key))
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert limited.json()["code"] == "rate_limited"
        assert client.get("/v1/tasks", headers=auth(other)).status_code == 200
        clock.advance(1.0)
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 200


def test_auth_cache_trusts_a_key_for_its_lifetime_only(
    settings: Any, db: Database, clock: FakeClock, make_account: AccountFactory
) -> None:
    from starlette.testclient import TestClient

    from service import accounts
    from service.api.app import create_app

    app = create_app(
        settings.replace(auth_cache_seconds=5.0), clock=clock, database=db, embedded_worker=False
    )
    _, key = make_account("cached")
    with TestClient(app) as client:
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 200
        db.write_sync(lambda c: accounts.revoke_key(c, key[:10], clock.now()))
        clock.advance(4.0)
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 200  # still cached
        clock.advance(1.5)
        assert client.get("/v1/tasks", headers=auth(key)).status_code == 401
        assert client.get("/v1/tasks", headers=auth("cb_unknown")).status_code == 401


def test_client_disconnect_mid_body_is_not_logged_as_an_error(
    app: Any, client: Any, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    messages = [
        {"type": "http.request", "body": b'{"model": "act_two", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/character_performance",
        "raw_path": b"/v1/character_performance",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "state": {},
        "app": app,
    }
    with caplog.at_level(logging.WARNING):
        client.portal.call(app, scope, receive, send)
    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
