"""What makes an input usable, and the error a user sees when it is not.

The decoding itself is the engine's prober (``service.engine.probe``: magic bytes and
header sizes for images, PyAV for video); this module adds the rules that depend on
the *role* of the input (a reference must be a 3–30 s video, a declared image must
be an image) and on how it arrived (size caps by URL and as data URI, the declared
content type). The checks are pure functions over :class:`~service.engine.MediaInfo`
so they are tested as tables; :func:`probe` runs the prober off the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePath

from service import engine

IMAGE_URL_MAX = 16 * 1024 * 1024
VIDEO_URL_MAX = 32 * 1024 * 1024
IMAGE_DATA_URI_MAX = 5 * 1024 * 1024
VIDEO_DATA_URI_MAX = 16 * 1024 * 1024
UPLOAD_MIN_BYTES = 512
MIN_REFERENCE_S = 3.0
MAX_REFERENCE_S = 30.0
ROLES = ("character", "reference")

IMAGE_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
VIDEO_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
}
#: Content types a server may label any file with; the prober decides then.
GENERIC_CONTENT_TYPES = ("application/octet-stream", "binary/octet-stream", "application/binary", "")


class MediaError(Exception):
    """A media step failed; ``failure_code`` is Runway's vocabulary, ``message`` a
    sentence fit for the API caller. ``retryable`` is True when trying again later may
    succeed (the remote server timed out or answered 5xx), False when the input itself
    is at fault."""

    def __init__(self, failure_code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.failure_code = failure_code
        self.message = message
        self.retryable = retryable

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        return (type(self), (self.failure_code, self.message))


class InputError(MediaError):
    """An input cannot be used (``ASSET.INVALID`` unless the cause is on our side)."""


def invalid(message: str, *, retryable: bool = False) -> InputError:
    return InputError("ASSET.INVALID", message, retryable=retryable)


def url_cap(declared: str) -> int:
    """Largest input Callboard downloads by URL for a declared image/video."""
    return IMAGE_URL_MAX if declared == "image" else VIDEO_URL_MAX


def data_uri_cap(declared: str) -> int:
    """Runway's data-URI limit for a declared image/video (encoded length)."""
    return IMAGE_DATA_URI_MAX if declared == "image" else VIDEO_DATA_URI_MAX


def mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def check_role(info: engine.MediaInfo, role: str, declared: str) -> None:
    """Raise :class:`InputError` unless ``info`` may serve as ``role`` declared ``declared``."""
    if info.kind != declared:
        raise invalid(
            f"The {role} is declared as {_article(declared)} but the file is {_article(info.kind)}."
        )
    if role == "reference":
        duration = info.duration_s or 0.0
        if not MIN_REFERENCE_S <= duration <= MAX_REFERENCE_S:
            raise invalid(
                f"The reference video is {duration:.1f} s long; it must be "
                f"{MIN_REFERENCE_S:g} to {MAX_REFERENCE_S:g} seconds."
            )


def check_content_type(content_type: str | None, role: str, declared: str) -> None:
    """Refuse a served ``Content-Type`` that contradicts the declared type.

    Generic labels (``application/octet-stream``, none) pass: many object stores serve
    everything that way, and the prober checks the bytes anyway.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in GENERIC_CONTENT_TYPES:
        return
    if not media_type.startswith(f"{declared}/"):
        raise invalid(f"The {role} URL serves {media_type}, not {_article(declared)}.")


def content_type_of(info: engine.MediaInfo) -> str:
    """The Content-Type to serve a probed file with."""
    table = IMAGE_CONTENT_TYPES if info.kind == "image" else VIDEO_CONTENT_TYPES
    return table.get(info.format, "application/octet-stream")


def extension_of(info: engine.MediaInfo) -> str:
    return EXTENSIONS.get(content_type_of(info), ".bin")


def info_to_json(info: engine.MediaInfo) -> dict[str, object]:
    return {
        "kind": info.kind,
        "format": info.format,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "durationS": info.duration_s,
        "fps": info.fps,
        "hasAudio": info.has_audio,
    }


def info_from_json(data: dict[str, object]) -> engine.MediaInfo:
    return engine.MediaInfo(
        kind=data["kind"],  # type: ignore[arg-type]
        format=str(data["format"]),
        codec=data.get("codec"),  # type: ignore[arg-type]
        width=int(data["width"]),  # type: ignore[call-overload]
        height=int(data["height"]),  # type: ignore[call-overload]
        duration_s=data.get("durationS"),  # type: ignore[arg-type]
        fps=data.get("fps"),  # type: ignore[arg-type]
        has_audio=bool(data.get("hasAudio")),
    )


async def probe(path: Path) -> engine.MediaInfo:
    """Probe ``path`` on a thread; any unusable file becomes ``InputError``."""
    try:
        return await asyncio.to_thread(engine.probe, path)
    except engine.EngineError as exc:
        raise InputError(exc.failure_code, exc.message) from None


async def validate(path: Path, role: str, declared: str) -> engine.MediaInfo:
    """Probe and apply the role rules; the file's facts when it may be used."""
    info = await probe(path)
    check_role(info, role, declared)
    return info


def _article(kind: str) -> str:
    return "an image" if kind == "image" else "a video"


def content_type_for_path(path: PurePath) -> str:
    """The Content-Type for a file Callboard named (by its extension)."""
    suffix = path.suffix.lower()
    for content_type, ext in EXTENSIONS.items():
        if ext == suffix:
            return content_type
    return {".jpeg": "image/jpeg", ".m4v": "video/mp4", ".mkv": "video/x-matroska"}.get(
        suffix, "application/octet-stream"
    )
