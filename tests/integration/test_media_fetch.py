"""Fetching inputs by HTTPS URL through a loopback TLS server, and every rejection a
user can meet there, with the exact sentence they see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from service import media, netguard, outbound, runtime
from tests.integration.test_media_support import client_context, clip, tls_server
from tests.support import MEDIA

TASK = "6be1f328-0000-4000-8000-000000000001"


def _file(path: Path, content_type: str) -> Any:
    async def handler(request: Request) -> Response:
        return Response(path.read_bytes(), media_type=content_type)

    return handler


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/character.jpg", status_code=302)


async def _html(request: Request) -> Response:
    return Response("<html>not an image</html>", media_type="text/html")


async def _corrupt(request: Request) -> Response:
    return Response(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200, media_type="video/mp4")


async def _unavailable(request: Request) -> Response:
    return Response("busy", status_code=503)


async def _endless(request: Request) -> Response:
    async def body() -> Any:
        block = b"\xff" * 65536
        for _ in range(17 * 16 + 1):  # just over 17 MB, no Content-Length
            yield block

    return StreamingResponse(body(), media_type="image/jpeg")


async def _lying_length(request: Request) -> Response:
    return Response(b"x" * 1024, headers={"content-length": str(20 * 1024 * 1024)}, media_type="image/jpeg")


def _app() -> Starlette:
    return Starlette(
        routes=[
            Route("/character.jpg", _file(MEDIA / "character_photo.jpg", "image/jpeg")),
            Route("/character-octet", _file(MEDIA / "character_photo.jpg", "application/octet-stream")),
            Route("/reference.mp4", _file(clip(5), "video/mp4")),
            Route("/short.mp4", _file(clip(2.1), "video/mp4")),
            Route("/long.mp4", _file(clip(31), "video/mp4")),
            Route("/mpeg4.mp4", _file(clip(4, codec="mpeg4"), "video/mp4")),
            Route("/image-as-video.mp4", _file(MEDIA / "character_photo.jpg", "video/mp4")),
            Route("/corrupt.mp4", _corrupt),
            Route("/redirect", _redirect),
            Route("/page.html", _html),
            Route("/unavailable.jpg", _unavailable),
            Route("/endless.jpg", _endless),
            Route("/lying.jpg", _lying_length),
        ]
    )


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with tls_server(_app()) as url:
        yield url


def _fetch(db: Any, rt: Any, role: str, kind: str, uri: str, http: httpx.AsyncClient | None = None) -> Path:
    async def main() -> Path:
        client = http or httpx.AsyncClient(verify=client_context(), follow_redirects=False)
        async with client:
            return await media.fetch_input(
                db, rt, client, account_id="acc_x", task_id=TASK, role=role, ref={"type": kind, "uri": uri}
            )

    return asyncio.run(main())


def _error(db: Any, rt: Any, role: str, kind: str, uri: str, **kw: Any) -> media.InputError:
    with pytest.raises(media.InputError) as caught:
        _fetch(db, rt, role, kind, uri, **kw)
    assert caught.value.failure_code == "ASSET.INVALID"
    return caught.value


def test_https_inputs_are_downloaded_validated_and_kept_in_the_work_dir(
    db: Any, rt: Any, origin: str
) -> None:
    character = _fetch(db, rt, "character", "image", f"{origin}/character.jpg")
    reference = _fetch(db, rt, "reference", "video", f"{origin}/reference.mp4")
    assert character == media.work_dir(rt, TASK) / "character.jpg"
    assert reference == media.work_dir(rt, TASK) / "reference.mp4"
    assert character.read_bytes() == (MEDIA / "character_photo.jpg").read_bytes()
    assert reference.read_bytes() == clip(5).read_bytes()
    # idempotent: a second call reuses the file without fetching (the URL is not even valid now)
    assert _fetch(db, rt, "reference", "video", "https://unreachable.invalid/x.mp4") == reference
    media.cleanup_work(rt, TASK)
    assert not media.work_dir(rt, TASK).exists()


def test_generic_content_type_is_accepted_when_the_bytes_are_an_image(db: Any, rt: Any, origin: str) -> None:
    assert _fetch(db, rt, "character", "image", f"{origin}/character-octet").name == "character.jpg"


@pytest.mark.parametrize(
    ("role", "kind", "path", "message", "retryable"),
    [
        (
            "reference",
            "video",
            "/short.mp4",
            "The reference video is 2.1 s long; it must be 3 to 30 seconds.",
            False,
        ),
        (
            "reference",
            "video",
            "/long.mp4",
            "The reference video is 31.0 s long; it must be 3 to 30 seconds.",
            False,
        ),
        (
            "reference",
            "video",
            "/mpeg4.mp4",
            "The video codec 'mpeg4' is not supported (use H.264, H.265, VP8, VP9, AV1 or ProRes).",
            False,
        ),
        (
            "reference",
            "video",
            "/corrupt.mp4",
            "The file is not a supported image (JPEG, PNG, WebP) or video (MP4, MOV, WebM).",
            False,
        ),
        (
            "character",
            "video",
            "/image-as-video.mp4",
            "The character is declared as a video but the file is an image.",
            False,
        ),
        ("character", "image", "/page.html", "The character URL serves text/html, not an image.", False),
        ("character", "image", "/reference.mp4", "The character URL serves video/mp4, not an image.", False),
        (
            "character",
            "image",
            "/redirect",
            "The character URL redirects (HTTP 302) to /character.jpg; redirects are not followed, use the final URL.",
            False,
        ),
        ("character", "image", "/unavailable.jpg", "The character URL answered HTTP 503.", True),
        ("character", "image", "/missing.jpg", "The character URL answered HTTP 404.", False),
        (
            "character",
            "image",
            "/endless.jpg",
            "The character file is larger than the 16 MB allowed for an image by URL.",
            False,
        ),
        (
            "character",
            "image",
            "/lying.jpg",
            "The character file is 20 MB, over the 16 MB allowed for an image by URL.",
            False,
        ),
    ],
)
def test_bad_urls_fail_with_a_readable_reason(
    db: Any, rt: Any, origin: str, role: str, kind: str, path: str, message: str, retryable: bool
) -> None:
    error = _error(db, rt, role, kind, origin + path)
    assert error.message == message
    assert error.retryable is retryable
    assert list(media.work_dir(rt, TASK).glob(f"{role}*")) == []  # nothing half-written left behind


def test_private_address_is_refused_before_connecting(db: Any, settings: Any, clock: Any) -> None:
    strict = runtime.build(settings.replace(allow_private_targets=()), clock)
    error = _error(db, strict, "character", "image", "https://10.1.2.3/character.jpg")
    assert error.message == (
        "The character URL was refused: destination 10.1.2.3 resolves to 10.1.2.3, a private address."
    )
    error = _error(db, strict, "character", "image", "https://localhost/character.jpg")
    assert error.message == "The character URL was refused: destination localhost is a loopback name."


def test_name_resolving_to_a_private_address_is_refused_at_connect_time(
    db: Any, settings: Any, clock: Any, origin: str
) -> None:
    # 'vm'/'runsc'-style names from /etc/hosts resolve to 127.0.0.1 without DNS; the
    # production client's resolver must refuse them even though the URL looks public.
    strict = runtime.build(settings.replace(allow_private_targets=()), clock)
    port = origin.rsplit(":", 1)[1]
    host = _loopback_name()
    http = outbound.httpx_client(allow=netguard.Allowlist(), connect_timeout=2, read_timeout=2)
    error = _error(db, strict, "character", "image", f"https://{host}:{port}/character.jpg", http=http)
    assert error.message == (
        f"The character URL was refused: destination {host} resolves to 127.0.0.1, a loopback address."
    )
    assert error.retryable is False


def _loopback_name() -> str:
    import socket

    for candidate in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            if candidate != "localhost" and socket.gethostbyname(candidate) == "127.0.0.1":
                return candidate
        except OSError:
            continue
    pytest.skip("no non-'localhost' name resolves to 127.0.0.1 here")
