"""Signed links follow the injected clock: valid for their lifetime, then refused."""

from __future__ import annotations

import itsdangerous
import pytest

from service import links
from tests.support import FakeClock


def _links(clock: FakeClock, ttl: float = 600.0) -> links.Links:
    return links.Links("k" * 32, "https://cb.example/", ttl_seconds=ttl, clock=clock.now)


def test_file_links_expire_after_their_lifetime() -> None:
    clock = FakeClock()
    signer = _links(clock)
    url = signer.file_url("outputs/t/abc.mp4")
    assert url.startswith("https://cb.example/files/") and url.endswith("/abc.mp4")
    token = url.split("/")[-2]
    clock.advance(600)
    assert signer.verify(token) == {"k": "outputs/t/abc.mp4"}
    clock.advance(1)
    with pytest.raises(itsdangerous.SignatureExpired):
        signer.verify(token)


def test_upload_tokens_and_file_tokens_are_not_interchangeable() -> None:
    clock = FakeClock()
    signer = _links(clock)
    upload_token = signer.upload_url("ast_1").rsplit("/", 1)[-1]
    file_token = signer.file_url("outputs/t/a.mp4").split("/")[-2]
    assert signer.verify_upload(upload_token) == "ast_1"
    with pytest.raises(itsdangerous.BadSignature):
        signer.verify(upload_token)
    with pytest.raises(itsdangerous.BadSignature):
        signer.verify_upload(file_token)
    clock.advance(links.UPLOAD_URL_TTL_SECONDS + 1)
    with pytest.raises(itsdangerous.SignatureExpired):
        signer.verify_upload(upload_token)


def test_another_secret_does_not_verify() -> None:
    clock = FakeClock()
    token = _links(clock).file_url("a/b.mp4").split("/")[-2]
    other = links.Links("z" * 32, "https://cb.example", clock=clock.now)
    with pytest.raises(itsdangerous.BadSignature):
        other.verify(token)
