"""Fixtures for the dashboard tests: an app with the shared media as the examples
folder, and a signed-in browser-like client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import settings as settings_mod
from service.db import Database
from tests.support import MEDIA, FakeClock

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


@pytest.fixture
def web_settings(settings: settings_mod.Settings) -> settings_mod.Settings:
    return settings.replace(examples_dir=MEDIA)


@pytest.fixture
def web_app(web_settings: settings_mod.Settings, db: Database, clock: FakeClock) -> Any:
    from service.api.app import create_app

    return create_app(web_settings, clock=clock, database=db, embedded_worker=False)


@pytest.fixture
def browser(web_app: Any) -> Iterator[TestClient]:
    """A client that keeps cookies, like a browser; not signed in."""
    with TestClient(web_app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str, next_path: str = "/ui/tasks") -> Any:
    page = client.get("/ui/signin", params={"next": next_path})
    return client.post("/ui/signin", data={"csrf": csrf_of(page.text), "api_key": key, "next": next_path})


class SignedIn:
    """A signed-in client with its account, key and the session's CSRF token."""

    def __init__(self, client: TestClient, account: dict[str, Any], key: str) -> None:
        self.client = client
        self.account = account
        self.key = key
        assert sign_in(client, key).status_code == 303
        self.csrf = csrf_of(client.get("/ui/tasks").text)


@pytest.fixture
def signed_in(browser: TestClient, make_account: Any) -> SignedIn:
    account, key = make_account("web-user")
    return SignedIn(browser, account, key)
