"""Hostile requests: oversized bodies and heads, malformed JSON, slow clients, and the
per-key rate limit. Bad input always gets a clear 4xx (naming the field where there
is one), never a 500, and never costs other clients their service.

Heads and slow clients are tried against the server ``callboard serve`` runs (uvicorn
with :mod:`service.api.server`'s protocol) over real loopback sockets.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from service.api import server
from service.api.app import create_app
from tests.support import free_port

JSON_ROUTES = [
    ("POST", "/v1/character_performance"),
    ("POST", "/v1/webhooks"),
    ("POST", "/v1/hooks"),
    ("POST", "/v1/uploads"),
    ("POST", "/v1/organization/usage"),
    ("POST", "/v1/runwayml/gen4/act-two"),
    ("POST", "/v1/runwayml/gen3/actone"),
]
MALFORMED = [
    b"{",
    b"{'model': 'act_two'}",
    b'{"model": "act_two",}',
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"42",
    b"NaN",
    b'{"model": NaN}',
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b'{"a": "\xc3\x28"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"model": 1e999999}',
    b'{"seed": 123456789012345678901234567890}',
    b'{"model": "act_two", "model": "x"}',
    b"\x00\x01\x02",
    b" ",
]


@pytest.fixture
def small(settings: Any, db: Any, clock: Any) -> Iterator[TestClient]:
    app = create_app(
        settings.replace(max_body_bytes=32 * 1024, rate_limit=0.0),
        clock=clock,
        database=db,
        embedded_worker=False,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_malformed_json_is_a_400_naming_the_body_on_every_json_route(
    small: TestClient, make_account: Any, method: str, path: str
) -> None:
    _, key = make_account()
    for raw in MALFORMED:
        if raw in (b"null", b" ") and path == "/v1/organization/usage":
            continue  # the usage query's body is optional: null is read as no options
        resp = small.request(
            method,
            path,
            content=raw,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert 400 <= resp.status_code < 500, (path, raw[:40], resp.status_code, resp.text)
        body = resp.json()
        assert body.get("error") and body.get("field"), (path, raw[:40], body)


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_an_oversized_body_is_a_413_with_or_without_a_content_length(
    small: TestClient, make_account: Any, method: str, path: str
) -> None:
    _, key = make_account()
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    big = b'{"replyRef": "' + b"x" * 100_000 + b'"}'
    declared = small.request(method, path, content=big, headers=h)
    assert declared.status_code == 413, (path, declared.status_code, declared.text)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as bytes stream in
        for _ in range(50):
            yield b"x" * 1000

    streamed = small.request(method, path, content=chunks(), headers=h)
    assert streamed.status_code in (400, 413), (path, streamed.status_code, streamed.text)
    assert streamed.status_code == 413 or "JSON" in streamed.text


def test_a_lying_content_length_does_not_get_past_the_limit(small: TestClient, make_account: Any) -> None:
    _, key = make_account()
    resp = small.post(
        "/v1/character_performance",
        content=b"x" * 100_000,
        headers={"Authorization": f"Bearer {key}", "Content-Length": "10"},
    )
    assert resp.status_code in (400, 413)


def test_the_rate_limit_answers_429_with_retry_after_per_key(
    settings: Any, db: Any, make_account: Any
) -> None:
    from tests.support import FakeClock

    clock = FakeClock()
    app = create_app(
        settings.replace(rate_limit=1.0, rate_burst=3), clock=clock, database=db, embedded_worker=False
    )
    _, hot = make_account("hot")
    _, calm = make_account("calm")
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [client.get("/v1/tasks", headers={"Authorization": f"Bearer {hot}"}) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        limited = answers[-1]
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {calm}"}).status_code == 200
        clock.advance(1.0)
        assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {hot}"}).status_code == 200
        bad = client.get("/v1/tasks", headers={"Authorization": "Bearer cb_nope"})
        assert bad.status_code == 401, "an unknown key is refused before it can use up anyone's tokens"


# -- the real server: heads and slow clients ---------------------------------------------------
@contextlib.contextmanager
def production_server(app: Any, *, max_head: int = 16 * 1024, head_timeout: float = 1.0) -> Iterator[int]:
    """uvicorn as ``callboard serve`` configures it (httptools protocol with head limits)."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=server.protocol(max_head, head_timeout),
        lifespan="on",
        log_level="error",
        timeout_keep_alive=2,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def _raw(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


@pytest.fixture
def live(app: Any) -> Iterator[int]:
    with production_server(app) as port:
        yield port


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * 20_000 + b"\r\n",
        b"X-Huge: " + b"a" * 2_000_000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(5000)),
        b"Cookie: " + b"c=1; " * 10_000 + b"\r\n",
    ],
    ids=["20kB-header", "2MB-header", "5000-headers", "huge-cookie"],
)
def test_an_oversized_request_head_is_a_431_and_the_server_keeps_serving(live: int, head: bytes) -> None:
    answer = _raw(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"headers_too_large" in answer
    assert httpx.get(f"http://127.0.0.1:{live}/healthz").status_code == 200


def test_an_oversized_url_is_refused(live: int) -> None:
    answer = _raw(live, b"GET /v1/tasks/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431") or answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_normal_heads_and_keep_alive_still_work(live: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{live}") as client:
        for _ in range(50):  # one connection: the head counter starts again for each request
            resp = client.get("/healthz", headers={"X-Pad": "p" * 8000})
            assert resp.status_code == 200
        big = client.post(
            "/v1/character_performance", content=b"{" + b" " * 100_000, headers={"Authorization": "Bearer x"}
        )
        assert big.status_code == 401, "a big body is not a big head"


def test_a_slowloris_head_is_cut_off_and_others_are_served_meanwhile(live: int) -> None:
    slow = [socket.create_connection(("127.0.0.1", live), timeout=10) for _ in range(50)]
    try:
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{live}/healthz", timeout=5).status_code == 200
        for s in slow:  # one byte now and then never completes the head: 408, then closed
            s.sendall(b"a")
        answers = []
        for s in slow:
            out = b""
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while chunk := s.recv(4096):
                    out += chunk
            answers.append(out)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    finally:
        for s in slow:
            s.close()


def test_a_slow_body_does_not_hold_up_other_clients(live: int, make_account: Any) -> None:
    _, key = make_account()
    s = socket.create_connection(("127.0.0.1", live), timeout=10)
    try:
        s.sendall(
            b"POST /v1/character_performance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        for _ in range(5):
            assert (
                httpx.get(
                    f"http://127.0.0.1:{live}/v1/tasks", headers={"Authorization": f"Bearer {key}"}
                ).status_code
                == 200
            )
        s.sendall(b"}")
        s.shutdown(socket.SHUT_WR)  # the client gives up: the request ends, nothing is created
    finally:
        s.close()
    assert (
        httpx.get(f"http://127.0.0.1:{live}/v1/tasks", headers={"Authorization": f"Bearer {key}"}).json()[
            "data"
        ]
        == []
    )
