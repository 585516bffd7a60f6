"""Tenancy across every route: account B guessing account A's ids learns nothing.

Account A creates one of everything (a task with a replyUrl, a subscription, a REST
hook, a delivery, a useapi asset, an upload slot); account B then calls **every route
of the app that takes an id** with A's ids, over the API with its key and over the
dashboard with its session. Each answer must be exactly the answer for an id that
never existed (API routes: 404), and A's rows must be unchanged afterwards. Routes are
discovered from the app itself, so a new route without an entry in :data:`ROUTES`
fails :func:`test_every_route_with_an_id_is_covered`.

Keys and webhook secrets never appear in logs or in any error body.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import pytest
from starlette.routing import Mount, Route

from tests.conftest import AccountFactory
from tests.support import MEDIA
from tests.web.conftest import csrf_of, sign_in

PHOTO = MEDIA / "character_photo.jpg"
BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/character.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/reference.mp4"},
    "replyUrl": "https://hooks.example.com/a",
    "replyRef": "tenant-a",
}

# (method, path template) -> which of A's ids fill it, or why it is not tenant data.
# Values: a dict param -> kind of id, or a string giving the exemption.
ROUTES: dict[tuple[str, str], dict[str, str] | str] = {
    ("GET", "/v1/tasks/{id}"): {"id": "task"},
    ("DELETE", "/v1/tasks/{id}"): {"id": "task"},
    ("GET", "/v1/tasks/{id}/stream"): {"id": "task"},
    ("GET", "/v1/tasks/{id}/deliveries"): {"id": "task"},
    ("GET", "/v1/webhooks/{id}"): {"id": "webhook"},
    ("PATCH", "/v1/webhooks/{id}"): {"id": "webhook"},
    ("DELETE", "/v1/webhooks/{id}"): {"id": "webhook"},
    ("GET", "/v1/webhooks/{id}/secret"): {"id": "webhook"},
    ("POST", "/v1/webhooks/{id}/rotate-secret"): {"id": "webhook"},
    ("POST", "/v1/webhooks/{id}/test"): {"id": "webhook"},
    ("POST", "/v1/webhooks/{id}/recover"): {"id": "webhook"},
    ("GET", "/v1/webhooks/{id}/deliveries"): {"id": "webhook"},
    ("GET", "/v1/deliveries/{id}"): {"id": "delivery"},
    ("POST", "/v1/deliveries/{id}/retry"): {"id": "delivery"},
    ("DELETE", "/v1/hooks/{id}"): {"id": "hook"},
    ("GET", "/v1/runwayml/tasks/{task_id}"): {"task_id": "task"},
    ("DELETE", "/v1/runwayml/assets/{asset_id}"): {"asset_id": "asset"},
    ("GET", "/ui/tasks/{id}"): {"id": "task"},
    ("POST", "/ui/tasks/{id}/cancel"): {"id": "task"},
    ("GET", "/ui/tasks/{id}/inputs/{role}"): {"id": "task", "role": "=character"},
    ("GET", "/ui/tasks/{id}/thumbnail.jpg"): {"id": "task"},
    ("GET", "/ui/webhooks/{id}"): {"id": "webhook"},
    ("POST", "/ui/webhooks/{id}/{action}"): {"id": "webhook", "action": "*"},
    ("GET", "/ui/deliveries/{id}"): {"id": "delivery"},
    ("POST", "/ui/deliveries/{id}/retry"): {"id": "delivery"},
    ("POST", "/uploads/{token}"): "the signed upload token is the credential (no account)",
    ("GET", "/files/{token}/{name}"): "the signed, expiring link is the credential (no account)",
    ("HEAD", "/files/{token}/{name}"): "the signed, expiring link is the credential (no account)",
    ("GET", "/ui/playground/examples/{name}"): "the operator's example files, shared by design",
}
WEB_ACTIONS = ("secret", "rotate", "test", "enable", "disable", "recover", "delete")
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/webhooks/{id}"): {"description": "mine now"},
    ("POST", "/v1/webhooks/{id}/recover"): {"since": "2020-01-01T00:00:00Z"},
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) of the app with a path parameter, mounts included."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount) and getattr(route, "routes", None):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route) and "{" in route.path:
                for method in route.methods or ():
                    if method != "HEAD" or route.path.startswith("/files"):
                        found.add((method, prefix + route.path))

    walk(app.routes, "")
    return found


def test_every_route_with_an_id_is_covered(app: Any) -> None:
    assert app_routes(app) == set(ROUTES)


class Tenant:
    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self.h = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers={**self.h, **kw.pop("headers", {})}, **kw)


@pytest.fixture
def world(client: Any, make_account: AccountFactory, db: Any, rt: Any) -> dict[str, Any]:
    """A's resources, and the keys and secrets that must never leak."""
    client.follow_redirects = False  # answers are compared as they are, redirects included
    _, key_a = make_account("tenant-a")
    _, key_b = make_account("tenant-b")
    a = Tenant(client, key_a)
    task = a.call("POST", "/v1/character_performance", json=BODY)
    assert task.status_code == 200, task.text
    webhook = a.call("POST", "/v1/webhooks", json={"url": "https://hooks.example.com/sub"})
    hook = a.call(
        "POST", "/v1/hooks", json={"target_url": "https://hooks.example.com/z", "event": "task.succeeded"}
    )
    assert webhook.status_code == 201 and hook.status_code == 201
    test = a.call("POST", f"/v1/webhooks/{webhook.json()['id']}/test")
    assert test.status_code == 202
    asset = a.call(
        "POST",
        "/v1/runwayml/assets/?name=hero.jpg",
        content=PHOTO.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    upload = a.call("POST", "/v1/uploads", json={"filename": "take.mp4"})
    assert asset.status_code == 200 and upload.status_code == 200, (asset.text, upload.text)
    ids = {
        "task": task.json()["id"],
        "webhook": webhook.json()["id"],
        "hook": hook.json()["id"],
        "delivery": test.json()["deliveryId"],
        "asset": asset.json()["assetId"],
    }
    secrets = [key_a, key_b, task.json()["replySecret"], webhook.json()["secret"], hook.json()["secret"]]
    return {"a": a, "b": Tenant(client, key_b), "ids": ids, "secrets": secrets}


def _never_existed(real: str) -> str:
    """An id of the same shape as ``real`` that no row has."""
    if re.fullmatch(r"[0-9a-f-]{36}", real):
        return str(uuid.uuid4())
    prefix = real.split("_", 1)[0] + "_" if "_" in real else ""
    return prefix + uuid.uuid4().hex[: max(8, len(real) - len(prefix))]


def _fill(path: str, params: dict[str, str], ids: dict[str, str], action: str) -> str:
    for name, kind in params.items():
        value = action if kind == "*" else kind[1:] if kind.startswith("=") else ids[kind]
        path = path.replace("{" + name + "}", value)
    return path


def _calls(ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """(method, path, template) for every covered route (each web action separately)."""
    out = []
    for (method, template), params in ROUTES.items():
        if isinstance(params, str):
            continue
        actions = WEB_ACTIONS if "{action}" in template else ("",)
        for action in actions:
            out.append((method, _fill(template, params, ids, action), template))
    return out


def _ask(tenant: Tenant, method: str, path: str, template: str, csrf: str | None) -> Any:
    body = BODIES.get((method, template))
    if path.startswith("/ui/"):
        if method == "POST":
            data = {"csrf": csrf or "", "since": "2020-01-01T00:00"}
            return tenant.client.request(method, path, data=data)
        return tenant.client.request(method, path)
    return tenant.call(method, path, json=body) if body is not None else tenant.call(method, path)


def _fingerprint(resp: Any, real: str, fake: str) -> tuple[int, str]:
    text = resp.text.replace(real, "ID").replace(fake, "ID")
    text = re.sub(r'name="csrf" value="[^"]+"', "", text)
    return resp.status_code, text


def test_another_accounts_ids_answer_exactly_like_unknown_ids(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b, ids = world["a"], world["b"], world["ids"]
    fake_ids = {kind: _never_existed(value) for kind, value in ids.items()}
    before = {
        "task": a.call("GET", f"/v1/tasks/{ids['task']}").json(),
        "webhook": a.call("GET", f"/v1/webhooks/{ids['webhook']}").json(),
        "secret": a.call("GET", f"/v1/webhooks/{ids['webhook']}/secret").json(),
        "delivery": a.call("GET", f"/v1/deliveries/{ids['delivery']}").json(),
    }
    client = b.client
    client.cookies.clear()
    assert sign_in(client, b.key).status_code == 303
    csrf = csrf_of(client.get("/ui/tasks").text)
    checked = 0
    for method, path, template in _calls(ids):
        guessed = _ask(b, method, path, template, csrf)
        fake_path = _calls(fake_ids)[[c[2] for c in _calls(ids)].index(template)][1]
        if "{action}" in template:
            fake_path = fake_path.rsplit("/", 1)[0] + "/" + path.rsplit("/", 1)[1]
        unknown = _ask(b, method, fake_path, template, csrf)
        kind = next(k for k, v in ids.items() if v in path)
        assert _fingerprint(guessed, ids[kind], fake_ids[kind]) == _fingerprint(
            unknown, ids[kind], fake_ids[kind]
        ), f"{method} {template} tells another account's id from an unknown one"
        if not template.startswith("/ui/"):
            assert guessed.status_code == 404, (method, path, guessed.status_code, guessed.text)
        checked += 1
    assert checked >= len([r for r in ROUTES.values() if not isinstance(r, str)])
    client.cookies.clear()
    after = {
        "task": a.call("GET", f"/v1/tasks/{ids['task']}").json(),
        "webhook": a.call("GET", f"/v1/webhooks/{ids['webhook']}").json(),
        "secret": a.call("GET", f"/v1/webhooks/{ids['webhook']}/secret").json(),
        "delivery": a.call("GET", f"/v1/deliveries/{ids['delivery']}").json(),
    }
    assert after == before, "B's calls changed nothing of A's"
    assert a.call("DELETE", f"/v1/runwayml/assets/{ids['asset']}").status_code == 204, "A's asset survived"
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    for secret in world["secrets"]:
        assert secret not in logged


def test_lists_show_only_the_callers_own_rows(world: dict[str, Any]) -> None:
    b, ids = world["b"], world["ids"]
    for path in (
        "/v1/tasks",
        "/v1/webhooks",
        "/v1/events",
        "/v1/events?type=task.created",
        "/v1/runwayml/tasks/",
        "/v1/runwayml/assets/",
        "/v1/organization",
    ):
        resp = b.call("GET", path)
        assert resp.status_code == 200, (path, resp.text)
        for value in ids.values():
            assert value not in resp.text, f"{path} shows another account's {value}"
    b.client.cookies.clear()
    assert sign_in(b.client, b.key).status_code == 303
    for page in ("/ui/tasks", "/ui/webhooks"):
        html = b.client.get(page).text
        for value in ids.values():
            assert value not in html, f"{page} shows another account's {value}"


@pytest.mark.parametrize(
    "header",
    ["Bearer {a}x", "Bearer {a}", "Basic {a}", "Bearer cb_" + "0" * 40, "bearer  {a}  "],
)
def test_error_bodies_never_echo_keys_or_secrets(world: dict[str, Any], header: str) -> None:
    a, ids = world["a"], world["ids"]
    value = header.format(a=world["secrets"][1][:-1] + "Z")
    client = a.client
    for method, path in (
        ("GET", "/v1/tasks/" + ids["task"]),
        ("GET", "/v1/webhooks/" + ids["webhook"] + "/secret"),
        ("POST", "/v1/character_performance"),
    ):
        resp = client.request(method, path, headers={"Authorization": value}, content=b"{")
        assert resp.status_code in (400, 401, 404), resp.text
        for secret in world["secrets"]:
            assert secret not in resp.text
            assert secret[:-1] not in resp.text
