"""SSRF: every URL-taking field refuses every forbidden destination form, and names
that *resolve* to forbidden addresses are refused at connect time.

Literal forms (WEBHOOKS.md "Security") are refused when the URL is accepted, with a
400 naming the field, on every field that takes a URL: ``replyUrl`` (Runway and
useapi fronts), ``character.uri``/``reference.uri``, webhook ``url`` (create and
change), REST-hook ``target_url``, the dashboard's webhook form and the CLI's account
default replyUrl. The app here has no allowlist.

Names are resolved by an injected inner resolver (no DNS, no /etc/hosts): the guarded
resolver refuses them for webhook deliveries and input fetches alike, while a real
loopback receiver behind the name proves the request would otherwise have gone through.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.testclient import TestClient

from service import netguard, outbound
from service import settings as settings_mod
from service.api.app import create_app
from service.webhooks import delivery, queue
from tests.faults import fakes as fakes_mod
from tests.support import MEDIA, ROOT
from tests.web.conftest import csrf_of, sign_in

FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "localhost",
    "foo.localhost",
    "localhost.",
    "0.0.0.0",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[fec0::1]",
    "[ff02::1]",
]
OTHER_BAD = [
    "http://user:pass@hooks.example.com/",
    "http://hooks.example.com@127.0.0.1/",
    "file:///etc/passwd",
    "gopher://hooks.example.com/",
    "ftp://hooks.example.com/",
    "http:///nohost",
    "http://hooks.example.com:0/",
    "javascript:alert(1)",
]
VECTORS = (
    [f"http://{h}/hook" for h in FORBIDDEN_HOSTS]
    + [f"https://{h}:8443/x" for h in FORBIDDEN_HOSTS[:6]]
    + OTHER_BAD
)
OK = {"type": "image", "uri": "https://example.com/character.jpg"}
REF = {"type": "video", "uri": "https://example.com/reference.mp4"}


@pytest.fixture
def strict(settings: settings_mod.Settings, db: Any, clock: Any) -> Any:
    """An app with no allowlist (the production default), and a key for it."""
    app = create_app(
        settings.replace(allow_private_targets=(), rate_limit=0.0),
        clock=clock,
        database=db,
        embedded_worker=False,
    )
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def _fields(driving: str, character: str) -> list[tuple[str, str, str, Any]]:
    """(name, method, path, body-for-url) for every API field that takes a URL."""
    return [
        (
            "replyUrl",
            "POST",
            "/v1/character_performance",
            lambda u: {"model": "act_two", "character": OK, "reference": REF, "replyUrl": u},
        ),
        (
            "character.uri",
            "POST",
            "/v1/character_performance",
            lambda u: {"model": "act_two", "character": {"type": "image", "uri": u}, "reference": REF},
        ),
        (
            "reference.uri",
            "POST",
            "/v1/character_performance",
            lambda u: {"model": "act_two", "character": OK, "reference": {"type": "video", "uri": u}},
        ),
        ("url", "POST", "/v1/webhooks", lambda u: {"url": u}),
        ("target_url", "POST", "/v1/hooks", lambda u: {"target_url": u, "event": "task.succeeded"}),
        (
            "replyUrl",
            "POST",
            "/v1/runwayml/gen4/act-two",
            lambda u: {"driving_assetId": driving, "character_assetId": character, "replyUrl": u},
        ),
        (
            "replyUrl",
            "POST",
            "/v1/runwayml/gen3/actone",
            lambda u: {"driving_assetId": driving, "character_assetId": character, "replyUrl": u},
        ),
    ]


def test_every_url_field_refuses_every_forbidden_form(strict: Any, make_account: Any) -> None:
    _, key = make_account("ssrf")
    h = {"Authorization": f"Bearer {key}"}
    hook = strict.post("/v1/webhooks", json={"url": "https://hooks.example.com/ok"}, headers=h)
    assert hook.status_code == 201
    assets = []
    for name, ctype in (("driving_short.mp4", "video/mp4"), ("character_photo.jpg", "image/jpeg")):
        up = strict.post(
            f"/v1/runwayml/assets/?name={name}",
            content=(MEDIA / name).read_bytes(),
            headers={**h, "Content-Type": ctype},
        )
        assert up.status_code == 200, up.text
        assets.append(up.json()["assetId"])
    fields = _fields(*assets) + [("url", "PATCH", f"/v1/webhooks/{hook.json()['id']}", lambda u: {"url": u})]
    checked = 0
    for field, method, path, body in fields:
        for vector in VECTORS:
            resp = strict.request(method, path, json=body(vector), headers=h)
            assert resp.status_code == 400, (field, path, vector, resp.status_code, resp.text)
            assert resp.json()["field"] == field, (field, path, vector, resp.json())
            checked += 1
    assert checked == len(fields) * len(VECTORS)
    # nothing was created by any of them
    assert len(strict.get("/v1/tasks", headers=h).json()["data"]) == 0
    assert len(strict.get("/v1/webhooks", headers=h).json()["data"]) == 1


def test_the_dashboard_webhook_form_refuses_forbidden_destinations(strict: Any, make_account: Any) -> None:
    _, key = make_account("ssrf-web")
    assert sign_in(strict, key, "/ui/webhooks").status_code == 303
    csrf = csrf_of(strict.get("/ui/webhooks").text)
    for vector in VECTORS[:12] + OTHER_BAD[:2]:
        resp = strict.post("/ui/webhooks", data={"csrf": csrf, "url": vector, "description": "x"})
        assert resp.status_code in (200, 400), (vector, resp.status_code)
    listed = strict.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert listed == []


def test_the_cli_refuses_a_forbidden_default_reply_url(tmp_path: Path) -> None:
    env = {"CALLBOARD_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--account", "acme"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    for vector in (
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/",
        "http://0x7f000001/",
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "accounts",
                "update",
                "acme",
                "--default-reply-url",
                vector,
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "--default-reply-url" in proc.stderr, proc.stderr


# -- names that resolve to forbidden addresses ------------------------------------------------
class FakeDNS(AbstractResolver):
    """Answers from a table; never touches the network or /etc/hosts."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        return None


REBINDING = {
    "rebind.example": ["127.0.0.1"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],  # one public answer does not launder a private one
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:127.0.0.1"],
}


def _session(allow: netguard.Allowlist, dns: FakeDNS) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=outbound.GuardedResolver(allow, inner=dns), force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5))


def _claimed(url: str) -> queue.Claimed:
    return queue.Claimed(
        id="msg_ssrf",
        fence=1,
        attempts=0,
        manual=False,
        endpoint_id="ep_x",
        kind="subscription",
        url=url,
        secrets=("whsec_" + "A" * 32,),
        body=b'{"type":"task.succeeded"}',
    )


@pytest.mark.parametrize("name", sorted(REBINDING))
def test_a_webhook_to_a_name_resolving_to_a_private_address_is_refused_at_connect(name: str) -> None:
    with fakes_mod.running(receivers=1) as fakes:
        port = int(fakes.receiver_urls[0].rsplit(":", 1)[1])
        url = f"http://{name}:{port}/hook"

        async def attempt(allow: netguard.Allowlist) -> queue.Result:
            dns = FakeDNS({**REBINDING, "rebind.example": ["127.0.0.1"]})
            async with _session(allow, dns) as session:
                result = await delivery.send(session, _claimed(url), now=0.0, allow=allow)
            assert dns.asked == [name], "the name was resolved at connect time"
            return result

        refused = asyncio.run(attempt(netguard.Allowlist()))
        assert refused.error_class == "blocked" and refused.status_code is None, refused
        assert fakes.snapshot() == [], "nothing reached the receiver behind the name"
        if name in ("rebind.example", "mixed.example"):
            # the control: allowed, the same resolver and name do reach the receiver
            allowed = asyncio.run(attempt(netguard.Allowlist(["127.0.0.1", "93.184.216.34"])))
            if name == "rebind.example":
                assert allowed.status_code == 200 and len(fakes.snapshot()) == 1, allowed


def test_an_input_fetch_from_a_name_resolving_to_a_private_address_is_refused() -> None:
    import io

    import httpx
    from httpx_aiohttp import AiohttpTransport

    from service.media import fetch, validation

    async def go(name: str) -> validation.InputError:
        allow = netguard.Allowlist()
        dns = FakeDNS(REBINDING)

        def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=outbound.GuardedResolver(allow, inner=dns))
            )

        async with httpx.AsyncClient(transport=AiohttpTransport(client=make)) as http:
            with pytest.raises(validation.InputError) as caught:
                await fetch.download(
                    http,
                    f"https://{name}/character.jpg",
                    io.BytesIO(),
                    allow=allow,
                    cap=1 << 20,
                    timeout=5,
                    label="character",
                )
        assert dns.asked, "the name was resolved (at connect time)"
        return caught.value

    for name in REBINDING:
        error = asyncio.run(go(name))
        assert "refused" in error.message or "private" in error.message or "loopback" in error.message, (
            error.message
        )
