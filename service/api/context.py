"""Per-request access to the process's services and the calling account."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from starlette.requests import Request

from service import accounts, errors, ratelimit
from service.db import Database
from service.runtime import Runtime

RUNWAY_VERSION = "2024-11-06"


@dataclasses.dataclass
class Services:
    """What route handlers reach through ``request.app.state.services``."""

    db: Database
    rt: Runtime
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    limiter: ratelimit.TokenBuckets | None = None
    # key -> (account, valid until): saves a database round trip per request
    auth_cache: dict[str, tuple[dict[str, Any], float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limiter is None:
            settings = self.rt.settings
            self.limiter = ratelimit.TokenBuckets(settings.rate_limit, settings.rate_burst)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def check_version(request: Request) -> None:
    """``X-Runway-Version`` is optional; when sent it must be the supported one."""
    version = request.headers.get("x-runway-version")
    if version is not None and version != RUNWAY_VERSION:
        raise errors.ValidationError(
            f"Unsupported X-Runway-Version {version!r}; the supported version is {RUNWAY_VERSION}",
            field="X-Runway-Version",
            code="unsupported_version",
        )


async def account(request: Request) -> dict[str, Any]:
    """The account behind the request's Bearer key, or AuthenticationError (401)."""
    cached = request.scope.get("callboard.account")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise errors.AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    svc = services(request)
    secret = secret.strip()
    found = await _lookup(svc, secret)
    if found is None:
        raise errors.AuthenticationError("Invalid or revoked API key", code="invalid_api_key")
    assert svc.limiter is not None
    wait = svc.limiter.take(secret, svc.rt.now())
    if wait > 0:
        raise errors.RateLimited(
            f"Too many requests for this API key (limit {svc.rt.settings.rate_limit:g}/s); retry later",
            headers={"Retry-After": ratelimit.retry_after_header(wait)},
        )
    request.scope["callboard.account"] = found
    return found


AUTH_CACHE_MAX = 10_000


async def _lookup(svc: Services, secret: str) -> dict[str, Any] | None:
    """The key's account, from this process's short-lived cache or the database.

    A revoked key keeps working in a process for at most ``CALLBOARD_AUTH_CACHE_SECONDS``
    (0 turns the cache off); unknown keys are never cached.
    """
    ttl = svc.rt.settings.auth_cache_seconds
    now = svc.rt.now()
    if ttl > 0:
        hit = svc.auth_cache.get(secret)
        if hit is not None and hit[1] > now:
            return hit[0]
    found = await svc.db.read(lambda conn: accounts.authenticate(conn, secret))
    if found is not None and ttl > 0:
        if len(svc.auth_cache) >= AUTH_CACHE_MAX:
            svc.auth_cache.clear()
        svc.auth_cache[secret] = (found, now + ttl)
    return found


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past ``CALLBOARD_MAX_BODY_BYTES`` without reading it all."""
    limit = services(request).rt.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(f"Request body is larger than the {limit} bytes allowed")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"Request body is larger than the {limit} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/"):
        raise errors.UnsupportedMediaType("Send the request body as application/json", field="body")
    raw = await read_body(request)
    if not raw.strip():
        raise errors.ValidationError("The request body is empty; send a JSON object", field="body")
    # curl -d labels JSON as form-urlencoded; the body decides, not the label
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body already read, or a 400 naming the body."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.ValidationError(
            f"The request body is not valid JSON ({exc.msg})", field="body"
        ) from None


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within ``[lo, hi]``, or a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.ValidationError(f"{name}: must be an integer", field=name) from None
    if not lo <= value <= hi:
        raise errors.ValidationError(f"{name}: must be between {lo} and {hi}", field=name)
    return value
