"""The webhook management routes over HTTP: subscriptions, secrets, hooks, the event
feed, the delivery log, replay and recovery — and tenancy (another account's id is a 404)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AccountFactory

BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/character.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/reference.mp4"},
}
HOOK_URL = "https://hooks.example.com/callboard"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def alice(make_account: AccountFactory) -> str:
    return make_account("alice")[1]


@pytest.fixture
def mallory(make_account: AccountFactory) -> str:
    return make_account("mallory")[1]


def subscribe(client: Any, key: str, **body: Any) -> dict[str, Any]:
    res = client.post("/v1/webhooks", json={"url": HOOK_URL, **body}, headers=auth(key))
    assert res.status_code == 201, res.text
    return res.json()


def test_subscription_crud_shows_the_secret_only_on_create(client: Any, alice: str) -> None:
    created = subscribe(client, alice, eventTypes=["task.succeeded"], description="orders", rateLimit=5)
    assert created["secret"].startswith("whsec_")
    assert created["eventTypes"] == ["task.succeeded"] and created["rateLimit"] == 5 and created["enabled"]
    ep_id = created["id"]
    got = client.get(f"/v1/webhooks/{ep_id}", headers=auth(alice)).json()
    assert "secret" not in got and got["description"] == "orders"
    listed = client.get("/v1/webhooks", headers=auth(alice)).json()["data"]
    assert [e["id"] for e in listed] == [ep_id] and "secret" not in listed[0]
    patched = client.patch(
        f"/v1/webhooks/{ep_id}",
        json={"enabled": False, "eventTypes": None, "maxConcurrency": 3},
        headers=auth(alice),
    ).json()
    assert patched["enabled"] is False and patched["disabledReason"] and patched["eventTypes"] is None
    assert patched["maxConcurrency"] == 3
    again = client.patch(f"/v1/webhooks/{ep_id}", json={"enabled": True}, headers=auth(alice)).json()
    assert again["enabled"] is True and again["disabledReason"] is None
    assert client.delete(f"/v1/webhooks/{ep_id}", headers=auth(alice)).status_code == 204
    assert client.get(f"/v1/webhooks/{ep_id}", headers=auth(alice)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://10.1.2.3/hook"}, "url"),
        ({"url": "http://[::ffff:10.0.0.1]/hook"}, "url"),
        ({"url": "http://0xa000001/hook"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url"),
        ({"url": "ftp://hooks.example.com/"}, "url"),
        ({"url": HOOK_URL, "eventTypes": ["task.exploded"]}, "eventTypes"),
        ({"url": HOOK_URL, "eventTypes": []}, "eventTypes"),
        ({"url": HOOK_URL, "rateLimit": 0}, "rateLimit"),
        ({"url": HOOK_URL, "maxConcurrency": 1000}, "maxConcurrency"),
        ({"url": HOOK_URL, "enabled": "yes"}, "enabled"),
        ({"url": HOOK_URL, "colour": "red"}, "colour"),
    ],
)
def test_bad_subscriptions_are_a_400_naming_the_field(client: Any, alice: str, body: Any, field: str) -> None:
    res = client.post("/v1/webhooks", json=body, headers=auth(alice))
    assert res.status_code == 400
    assert res.json()["field"] == field


def test_reply_url_to_a_private_address_is_refused_at_create(client: Any, alice: str) -> None:
    res = client.post(
        "/v1/character_performance", json={**BODY, "replyUrl": "http://192.168.1.10/cb"}, headers=auth(alice)
    )
    assert res.status_code == 400 and res.json()["field"] == "replyUrl"


def test_rotate_and_reveal_secret(client: Any, alice: str) -> None:
    created = subscribe(client, alice)
    rotated = client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=auth(alice)).json()
    assert rotated["secret"] != created["secret"] and rotated["previousSecretExpiresAt"].endswith("Z")
    revealed = client.get(f"/v1/webhooks/{created['id']}/secret", headers=auth(alice)).json()
    assert revealed["secret"] == rotated["secret"]


def test_test_event_is_queued_and_shows_in_the_delivery_log(client: Any, alice: str) -> None:
    ep = subscribe(client, alice)
    res = client.post(f"/v1/webhooks/{ep['id']}/test", headers=auth(alice))
    assert res.status_code == 202
    log = client.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=auth(alice)).json()
    (item,) = log["data"]
    assert item["id"] == res.json()["deliveryId"] and item["eventType"] == "webhook.test"
    assert item["status"] == "pending" and item["attempts"] == [] and log["nextCursor"] is None
    one = client.get(f"/v1/deliveries/{item['id']}", headers=auth(alice)).json()
    assert one["id"] == item["id"]


def test_task_deliveries_list_the_reply_url_and_subscriber_deliveries(client: Any, alice: str) -> None:
    subscribe(client, alice)
    task = client.post(
        "/v1/character_performance",
        json={**BODY, "replyUrl": "https://cb.example.com/x"},
        headers=auth(alice),
    ).json()
    data = client.get(f"/v1/tasks/{task['id']}/deliveries", headers=auth(alice)).json()["data"]
    assert len(data) == 2 and {d["eventType"] for d in data} == {"task.created"}
    assert all(d["taskId"] == task["id"] for d in data)


def test_delivery_log_pages_and_filters(client: Any, alice: str) -> None:
    ep = subscribe(client, alice)
    for _ in range(3):
        client.post("/v1/character_performance", json=BODY, headers=auth(alice))
    first = client.get(f"/v1/webhooks/{ep['id']}/deliveries?limit=2", headers=auth(alice)).json()
    assert len(first["data"]) == 2 and first["nextCursor"]
    rest = client.get(
        f"/v1/webhooks/{ep['id']}/deliveries?limit=2&cursor={first['nextCursor']}", headers=auth(alice)
    ).json()
    assert len(rest["data"]) == 1 and rest["nextCursor"] is None
    none = client.get(f"/v1/webhooks/{ep['id']}/deliveries?status=failed", headers=auth(alice)).json()
    assert none["data"] == []
    bad = client.get(f"/v1/webhooks/{ep['id']}/deliveries?status=lost", headers=auth(alice))
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_retry_marks_the_delivery_manual_and_recover_validates_since(client: Any, alice: str) -> None:
    ep = subscribe(client, alice)
    client.post("/v1/character_performance", json=BODY, headers=auth(alice))
    (item,) = client.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=auth(alice)).json()["data"]
    res = client.post(f"/v1/deliveries/{item['id']}/retry", headers=auth(alice))
    assert res.status_code == 202 and res.json()["id"] == item["id"] and res.json()["status"] == "pending"
    ok = client.post(
        f"/v1/webhooks/{ep['id']}/recover", json={"since": "2020-01-01T00:00:00Z"}, headers=auth(alice)
    )
    assert ok.status_code == 202 and ok.json() == {"resent": 0, "more": False}
    bad = client.post(f"/v1/webhooks/{ep['id']}/recover", json={"since": "yesterday"}, headers=auth(alice))
    assert bad.status_code == 400 and bad.json()["field"] == "since"


def test_rest_hooks_subscribe_and_idempotent_unsubscribe(client: Any, alice: str, mallory: str) -> None:
    res = client.post(
        "/v1/hooks", json={"target_url": HOOK_URL, "event": "task.succeeded"}, headers=auth(alice)
    )
    assert res.status_code == 201
    hook_id = res.json()["id"]
    assert client.delete(f"/v1/hooks/{hook_id}", headers=auth(mallory)).status_code == 404
    assert client.delete(f"/v1/hooks/{hook_id}", headers=auth(alice)).status_code == 204
    assert client.delete(f"/v1/hooks/{hook_id}", headers=auth(alice)).status_code == 204
    assert client.delete("/v1/hooks/hook_nope", headers=auth(alice)).status_code == 404
    bad = client.post("/v1/hooks", json={"target_url": HOOK_URL, "event": "nope"}, headers=auth(alice))
    assert bad.status_code == 400 and bad.json()["field"] == "event"
    private = client.post(
        "/v1/hooks", json={"target_url": "http://10.0.0.5/", "event": "task.succeeded"}, headers=auth(alice)
    )
    assert private.status_code == 400 and private.json()["field"] == "target_url"


def test_event_feed_is_newest_first_with_stable_ids_and_a_sample_when_empty(
    client: Any, alice: str, clock: Any
) -> None:
    empty = client.get("/v1/events?type=task.succeeded", headers=auth(alice)).json()
    assert len(empty) == 1 and empty[0]["sample"] is True and empty[0]["type"] == "task.succeeded"
    assert client.get("/v1/events?type=task.succeeded", headers=auth(alice)).json()[0]["id"] == empty[0]["id"]
    ids = []
    for _ in range(2):
        ids.append(client.post("/v1/character_performance", json=BODY, headers=auth(alice)).json()["id"])
        clock.advance(1)
    feed = client.get("/v1/events?type=task.created", headers=auth(alice)).json()
    assert [e["data"]["id"] for e in feed] == ids[::-1]
    assert all(e["id"].startswith("evt_") and "sample" not in e for e in feed)
    assert set(feed[0]) == {"id", "type", "timestamp", "data"}
    assert client.get("/v1/events?type=task.created&limit=1", headers=auth(alice)).json() == feed[:1]
    bad = client.get("/v1/events?type=everything", headers=auth(alice))
    assert bad.status_code == 400 and bad.json()["field"] == "type"


def test_other_accounts_see_404_for_endpoints_deliveries_tasks_and_events(
    client: Any, alice: str, mallory: str
) -> None:
    ep = subscribe(client, alice)
    task = client.post("/v1/character_performance", json=BODY, headers=auth(alice)).json()
    (item,) = client.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=auth(alice)).json()["data"]
    m = auth(mallory)
    assert client.get(f"/v1/webhooks/{ep['id']}", headers=m).status_code == 404
    assert client.patch(f"/v1/webhooks/{ep['id']}", json={"enabled": False}, headers=m).status_code == 404
    assert client.delete(f"/v1/webhooks/{ep['id']}", headers=m).status_code == 404
    assert client.get(f"/v1/webhooks/{ep['id']}/secret", headers=m).status_code == 404
    assert client.post(f"/v1/webhooks/{ep['id']}/rotate-secret", headers=m).status_code == 404
    assert client.post(f"/v1/webhooks/{ep['id']}/test", headers=m).status_code == 404
    assert client.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=m).status_code == 404
    assert (
        client.post(
            f"/v1/webhooks/{ep['id']}/recover", json={"since": "2020-01-01T00:00:00Z"}, headers=m
        ).status_code
        == 404
    )
    assert client.get(f"/v1/deliveries/{item['id']}", headers=m).status_code == 404
    assert client.post(f"/v1/deliveries/{item['id']}/retry", headers=m).status_code == 404
    assert client.get(f"/v1/tasks/{task['id']}/deliveries", headers=m).status_code == 404
    assert client.get("/v1/webhooks", headers=m).json()["data"] == []
    assert client.get("/v1/events", headers=m).json()[0]["sample"] is True


def test_routes_need_a_key_and_are_in_the_openapi_document(client: Any) -> None:
    assert client.get("/v1/webhooks").status_code == 401
    assert client.get("/v1/events").status_code == 401
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/webhooks",
        "/v1/webhooks/{id}/rotate-secret",
        "/v1/hooks",
        "/v1/events",
        "/v1/deliveries/{id}/retry",
    ):
        assert path in paths
