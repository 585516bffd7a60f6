"""Role rules, served Content-Type checks and input references, as tables."""

from __future__ import annotations

import pytest

from service import engine
from service.media import refs, validation


def _video(duration: float | None) -> engine.MediaInfo:
    return engine.MediaInfo(
        kind="video",
        format="mp4",
        codec="h264",
        width=640,
        height=480,
        duration_s=duration,
        fps=24.0,
        has_audio=False,
    )


IMAGE = engine.MediaInfo(
    kind="image", format="png", codec=None, width=64, height=64, duration_s=None, fps=None, has_audio=False
)


@pytest.mark.parametrize(
    ("info", "role", "declared", "message"),
    [
        (IMAGE, "character", "image", None),
        (_video(9.4), "character", "video", None),
        (_video(40.0), "character", "video", None),  # only the reference has a length rule
        (_video(3.0), "reference", "video", None),
        (_video(30.0), "reference", "video", None),
        (
            _video(2.08),
            "reference",
            "video",
            "The reference video is 2.1 s long; it must be 3 to 30 seconds.",
        ),
        (
            _video(30.04),
            "reference",
            "video",
            "The reference video is 30.0 s long; it must be 3 to 30 seconds.",
        ),
        (
            _video(None),
            "reference",
            "video",
            "The reference video is 0.0 s long; it must be 3 to 30 seconds.",
        ),
        (IMAGE, "reference", "video", "The reference is declared as a video but the file is an image."),
        (_video(5.0), "character", "image", "The character is declared as an image but the file is a video."),
    ],
)
def test_role_rules(info: engine.MediaInfo, role: str, declared: str, message: str | None) -> None:
    if message is None:
        validation.check_role(info, role, declared)
        return
    with pytest.raises(validation.InputError) as caught:
        validation.check_role(info, role, declared)
    assert (caught.value.failure_code, caught.value.message) == ("ASSET.INVALID", message)


@pytest.mark.parametrize(
    ("content_type", "declared", "message"),
    [
        ("image/jpeg", "image", None),
        ("image/png; charset=binary", "image", None),
        ("video/mp4", "video", None),
        ("application/octet-stream", "video", None),
        ("binary/octet-stream", "image", None),
        (None, "image", None),
        ("text/html; charset=utf-8", "image", "The character URL serves text/html, not an image."),
        ("video/mp4", "image", "The character URL serves video/mp4, not an image."),
        ("image/gif", "video", "The character URL serves image/gif, not a video."),
        ("application/json", "video", "The character URL serves application/json, not a video."),
    ],
)
def test_served_content_type_against_the_declared_type(
    content_type: str | None, declared: str, message: str | None
) -> None:
    if message is None:
        validation.check_content_type(content_type, "character", declared)
        return
    with pytest.raises(validation.InputError) as caught:
        validation.check_content_type(content_type, "character", declared)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("uri", "kind", "asset_id"),
    [
        ("https://example.com/a.jpg", "https", None),
        ("data:image/png;base64,AAAA", "data", None),
        ("callboard://assets/ast_0123456789abcdef01234567ab", "asset", "ast_0123456789abcdef01234567ab"),
        (
            "runway://callboard/uploads/ast_0123456789abcdef01234567ab",
            "upload",
            "ast_0123456789abcdef01234567ab",
        ),
        ("runway://some-runway-upload/xyz", "runway", None),
    ],
)
def test_reference_kinds(uri: str, kind: str, asset_id: str | None) -> None:
    assert refs.classify(uri) == refs.Ref(kind=kind, uri=uri, asset_id=asset_id)


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/a.jpg",
        "file:///etc/passwd",
        "callboard://assets/../x",
        "runway://callboard/uploads/",
    ],
)
def test_unusable_references_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        refs.classify(uri)


def test_size_caps_follow_runway() -> None:
    assert validation.url_cap("image") == 16 * 1024 * 1024
    assert validation.url_cap("video") == 32 * 1024 * 1024
    assert validation.data_uri_cap("image") == 5 * 1024 * 1024
    assert validation.data_uri_cap("video") == 16 * 1024 * 1024
