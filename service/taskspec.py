"""The create request: parse and validate a Runway ``POST /v1/character_performance`` body.

:func:`parse` turns untrusted JSON into a :class:`TaskSpec` or raises
:class:`~service.errors.ValidationError` naming the offending field with a dotted path
(``character.uri``). Rules follow RUNWAY_API.md exactly; the gateway fields
(``replyUrl``, ``replyRef``, ``webhookEvents``) ride along in the same body.
Compatibility fronts build the same TaskSpec from their own field names.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import secrets
import urllib.parse
from typing import Any

from service import errors, netguard

MODEL = "act_two"
MODEL_ALIASES = {"act_two": MODEL, "runwayml-character-performance": MODEL}
RATIOS = ("1280:720", "720:1280", "960:960", "1104:832", "832:1104", "1584:672")
DEFAULT_RATIO = "1280:720"
SEED_MAX = 4294967295
EVENT_TYPES = (
    "task.created",
    "task.running",
    "task.progress",
    "task.succeeded",
    "task.failed",
    "task.cancelled",
)
TERMINAL_EVENT_TYPES = ("task.succeeded", "task.failed", "task.cancelled")

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
VIDEO_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/mpeg",
    "video/h264",
    "video/h265",
)
IMAGE_DATA_URI_MAX = 5 * 1024 * 1024
VIDEO_DATA_URI_MAX = 16 * 1024 * 1024
URL_MIN, URL_MAX = 13, 2048
GATEWAY_FIELD_MAX = 1024

_TOP_FIELDS = {
    "model",
    "character",
    "reference",
    "bodyControl",
    "expressionIntensity",
    "ratio",
    "seed",
    "contentModeration",
    "replyUrl",
    "replyRef",
    "webhookEvents",
}
_RUNWAY_URI = re.compile(r"^runway://[A-Za-z0-9._~\-/]{1,512}$")
_DATA_URI = re.compile(
    r"^data:(?P<type>[a-z0-9.+-]+/[a-z0-9.+-]+)(?P<params>(;[a-z0-9-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I
)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.I)


@dataclasses.dataclass(frozen=True)
class MediaRef:
    """One input: ``type`` is image|video, ``scheme`` is https|runway|data."""

    type: str
    uri: str
    scheme: str
    media_type: str | None = None  # data: URIs only
    size: int | None = None  # decoded bytes, data: URIs only

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "uri": self.uri}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    model: str
    character: MediaRef
    reference: MediaRef
    ratio: str
    seed: int
    expression_intensity: int
    body_control: bool
    public_figure_threshold: str
    reply_url: str | None = None
    reply_ref: str | None = None
    webhook_events: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form: Runway's field names, every option resolved to a value."""
        return {
            "model": self.model,
            "character": self.character.to_json(),
            "reference": self.reference.to_json(),
            "ratio": self.ratio,
            "seed": self.seed,
            "expressionIntensity": self.expression_intensity,
            "bodyControl": self.body_control,
            "contentModeration": {"publicFigureThreshold": self.public_figure_threshold},
        }


def _fail(field: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{field}: {message}", field=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_domain(host: str, field: str) -> None:
    if netguard.parse_ip_literal(host) is not None:
        raise _fail(field, "the URL's host must be a domain name, not an IP address")
    labels = host.rstrip(".").split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise _fail(field, f"the URL's host {host!r} is not a valid domain name")


def parse_media(value: Any, field: str, *, allowed_types: tuple[str, ...]) -> MediaRef:
    """Validate one ``{"type", "uri"}`` input object."""
    if not isinstance(value, dict):
        raise _fail(field, "must be an object with 'type' and 'uri'")
    unknown = set(value) - {"type", "uri"}
    if unknown:
        raise _fail(f"{field}.{sorted(unknown)[0]}", "is not a recognised field")
    kind = value.get("type")
    if kind not in allowed_types:
        raise _fail(f"{field}.type", f"must be {' or '.join(repr(t) for t in allowed_types)}")
    uri = value.get("uri")
    ufield = f"{field}.uri"
    if not isinstance(uri, str) or not uri:
        raise _fail(ufield, "is required and must be a string")
    if uri.startswith("data:"):
        return _parse_data_uri(uri, kind, ufield)
    if uri.startswith("runway://"):
        if not _RUNWAY_URI.match(uri):
            raise _fail(ufield, "is not a valid runway:// upload URI")
        return MediaRef(type=kind, uri=uri, scheme="runway")
    if not uri.lower().startswith("https://"):
        raise _fail(ufield, "must be an HTTPS URL, a runway:// upload URI or a data: URI")
    if not URL_MIN <= len(uri) <= URL_MAX:
        raise _fail(ufield, f"an HTTPS URL must be {URL_MIN} to {URL_MAX} characters long")
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise _fail(ufield, "is not a valid URL") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _fail(ufield, "the URL must not contain credentials")
    _check_domain(parts.hostname or "", ufield)
    return MediaRef(type=kind, uri=uri, scheme="https")


def _parse_data_uri(uri: str, kind: str, field: str) -> MediaRef:
    match = _DATA_URI.match(uri)
    if not match:
        raise _fail(field, "is not a valid data URI (expected data:<media type>;base64,<data>)")
    media_type = match.group("type").lower()
    allowed = IMAGE_TYPES if kind == "image" else VIDEO_TYPES
    if media_type not in allowed:
        raise _fail(
            field,
            f"data URI media type {media_type!r} is not accepted for a {kind}; use one of {', '.join(allowed)}",
        )
    if not match.group("b64"):
        raise _fail(field, "data URI must be base64-encoded (';base64,')")
    payload = uri[match.end() :]
    limit = IMAGE_DATA_URI_MAX if kind == "image" else VIDEO_DATA_URI_MAX
    if len(payload) * 3 // 4 > limit + 3:
        raise _fail(field, f"data URI is larger than the {limit // (1024 * 1024)} MB allowed for a {kind}")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(field, "data URI payload is not valid base64") from None
    if len(raw) > limit:
        raise _fail(field, f"data URI is larger than the {limit // (1024 * 1024)} MB allowed for a {kind}")
    if not raw:
        raise _fail(field, "data URI is empty")
    return MediaRef(type=kind, uri=uri, scheme="data", media_type=media_type, size=len(raw))


def parse_reply_url(value: Any, field: str, allow: netguard.Allowlist) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(field, "must be a URL string")
    if len(value) > GATEWAY_FIELD_MAX:
        raise _fail(field, f"must be at most {GATEWAY_FIELD_MAX} characters")
    try:
        netguard.check_url(value, allow)
    except netguard.UrlRejected as exc:
        raise _fail(field, f"the URL {exc}") from None
    return value


def parse_webhook_events(value: Any, field: str = "webhookEvents") -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(field, "must be a list of event type strings")
    for item in value:
        if item not in EVENT_TYPES:
            raise _fail(field, f"unknown event type {item!r}; known: {', '.join(EVENT_TYPES)}")
    return tuple(dict.fromkeys(value))


def parse(body: Any, *, allow: netguard.Allowlist | None = None, random_seed: int | None = None) -> TaskSpec:
    """Validate a create body; a missing seed is drawn now, so a retry renders the same."""
    allow = allow or netguard.Allowlist()
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    unknown = sorted(set(body) - _TOP_FIELDS)
    if unknown:
        raise _fail(unknown[0], "is not a recognised field")
    model = body.get("model")
    if model is None:
        raise _fail("model", "is required")
    if model not in MODEL_ALIASES:
        raise _fail("model", f"must be {MODEL!r}")
    if "character" not in body:
        raise _fail("character", "is required")
    if "reference" not in body:
        raise _fail("reference", "is required")
    character = parse_media(body["character"], "character", allowed_types=("image", "video"))
    reference = parse_media(body["reference"], "reference", allowed_types=("video",))

    body_control = body.get("bodyControl", True)
    if not isinstance(body_control, bool):
        raise _fail("bodyControl", "must be true or false")
    intensity = body.get("expressionIntensity", 3)
    if not _is_int(intensity) or not 1 <= intensity <= 5:
        raise _fail("expressionIntensity", "must be an integer from 1 to 5")
    ratio = body.get("ratio", DEFAULT_RATIO)
    if ratio not in RATIOS:
        raise _fail("ratio", f"must be one of {', '.join(RATIOS)}")
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(SEED_MAX + 1) if random_seed is None else random_seed
    elif not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise _fail("seed", f"must be an integer from 0 to {SEED_MAX}")
    moderation = body.get("contentModeration", {})
    if not isinstance(moderation, dict):
        raise _fail("contentModeration", "must be an object")
    extra = sorted(set(moderation) - {"publicFigureThreshold"})
    if extra:
        raise _fail(f"contentModeration.{extra[0]}", "is not a recognised field")
    threshold = moderation.get("publicFigureThreshold", "auto")
    if threshold not in ("auto", "low"):
        raise _fail("contentModeration.publicFigureThreshold", "must be 'auto' or 'low'")

    reply_ref = body.get("replyRef")
    if reply_ref is not None and (not isinstance(reply_ref, str) or len(reply_ref) > GATEWAY_FIELD_MAX):
        raise _fail("replyRef", f"must be a string of at most {GATEWAY_FIELD_MAX} characters")
    return TaskSpec(
        model=MODEL,
        character=character,
        reference=reference,
        ratio=ratio,
        seed=seed,
        expression_intensity=intensity,
        body_control=body_control,
        public_figure_threshold=threshold,
        reply_url=parse_reply_url(body.get("replyUrl"), "replyUrl", allow),
        reply_ref=reply_ref,
        webhook_events=parse_webhook_events(body.get("webhookEvents")),
    )
