"""Signing in and out of the dashboard, and CSRF protection of its forms."""

from __future__ import annotations

from typing import Any

import pytest

from service import accounts
from service.web import session
from tests.web.conftest import csrf_of, sign_in


def test_pages_redirect_to_sign_in_and_back_after_signing_in(browser: Any, make_account: Any) -> None:
    _, key = make_account()
    page = browser.get("/ui/webhooks")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/signin?next=%2Fui%2Fwebhooks"
    done = sign_in(browser, key, "/ui/webhooks")
    assert done.status_code == 303 and done.headers["location"] == "/ui/webhooks"
    cookie = done.headers["set-cookie"]
    assert "cb_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert key not in cookie
    assert browser.get("/ui/webhooks").status_code == 200


def test_a_wrong_key_is_refused_with_a_readable_message(browser: Any) -> None:
    answer = sign_in(browser, "cb_not-a-real-key")
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.text
    assert browser.get("/ui/tasks").status_code == 303


def test_sign_in_without_the_forms_token_is_refused(browser: Any, make_account: Any) -> None:
    _, key = make_account()
    answer = browser.post("/ui/signin", data={"api_key": key, "csrf": "forged"})
    assert answer.status_code == 403
    assert "cb_session" not in answer.headers.get("set-cookie", "")


def test_revoking_the_key_ends_its_sessions(browser: Any, make_account: Any, db: Any) -> None:
    _, key = make_account()
    sign_in(browser, key)
    assert browser.get("/ui/tasks").status_code == 200
    db.write_sync(lambda conn: accounts.revoke_key(conn, key[:10], 1.0))
    assert browser.get("/ui/tasks").status_code == 303


def test_sign_out_clears_the_session(signed_in: Any) -> None:
    client = signed_in.client
    out = client.post("/ui/signout", data={"csrf": signed_in.csrf})
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    assert client.get("/ui/tasks").status_code == 303


def test_a_tampered_cookie_is_no_session(browser: Any, make_account: Any) -> None:
    _, key = make_account()
    sign_in(browser, key)
    value = browser.cookies.get(session.COOKIE)
    browser.cookies.clear()
    browser.cookies.set(session.COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert browser.get("/ui/tasks").status_code == 303


@pytest.mark.parametrize(
    ("headers", "token_ok", "status"),
    [
        ({}, True, 303),
        ({}, False, 403),
        ({"origin": "https://evil.example"}, True, 403),
        ({"origin": "null"}, True, 403),
        ({"origin": "http://testserver"}, True, 303),
    ],
)
def test_forms_need_the_session_token_and_this_origin(
    signed_in: Any, headers: dict[str, str], token_ok: bool, status: int
) -> None:
    client = signed_in.client
    task = client.post(
        "/v1/character_performance",
        headers={"Authorization": f"Bearer {signed_in.key}"},
        json={
            "model": "act_two",
            "character": {"type": "image", "uri": "https://example.com/c.jpg"},
            "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
        },
    ).json()
    token = signed_in.csrf if token_ok else "wrong"
    answer = client.post(f"/ui/tasks/{task['id']}/cancel", data={"csrf": token}, headers=headers)
    assert answer.status_code == status
    expected = "CANCELLED" if status == 303 else "PENDING"
    assert (
        client.get(f"/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {signed_in.key}"}).json()[
            "status"
        ]
        == expected
    )


@pytest.mark.parametrize(
    ("value", "target"),
    [
        (None, "/ui/tasks"),
        ("/ui/webhooks", "/ui/webhooks"),
        ("/ui/tasks?status=FAILED", "/ui/tasks?status=FAILED"),
        ("https://evil.example/ui/", "/ui/tasks"),
        ("//evil.example/ui/x", "/ui/tasks"),
        ("/ui/\\evil.example", "/ui/tasks"),
        ("/v1/tasks", "/ui/tasks"),
    ],
)
def test_after_sign_in_only_dashboard_paths_are_followed(value: str | None, target: str) -> None:
    assert session.safe_next(value) == target


def test_every_page_carries_a_strict_content_security_policy(signed_in: Any) -> None:
    page = signed_in.client.get("/ui/playground")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/ui/static/app.js' in page.text and "http" not in page.text.split("<script")[1][:40]
    assert csrf_of(page.text) == signed_in.csrf
