"""Dashboard sign-in: a signed session cookie, and CSRF protection for every form.

Signing in takes an API key once; the cookie then carries only the key's *id*, the
account id and a random CSRF token, signed with itsdangerous (HMAC-SHA256, timestamped,
lifetime ``CALLBOARD_SESSION_TTL_SECONDS``). The key itself is never stored in the
cookie, and every request re-checks that the key is still live, so revoking a key
(``callboard keys revoke``) signs its sessions out at once.

CSRF: every state-changing form carries the session's token in a hidden ``csrf``
field (fetch calls send it as ``X-CSRF-Token``) and the token is compared in constant
time; a cross-site ``Origin`` is refused as well. The sign-in form, which has no
session yet, uses the double-submit pattern with its own short-lived cookie (it stops
login CSRF: a third-party page signing a visitor in with the attacker's key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import urllib.parse
from typing import Any

import itsdangerous
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response

from service import accounts
from service import models as m
from service.api import context

COOKIE = "cb_session"
SIGNIN_COOKIE = "cb_signin"
SIGNIN_TTL_SECONDS = 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_SCOPE_KEY = "callboard.web.session"


class CsrfRejected(Exception):
    """A state-changing request without a valid CSRF token or from another origin."""


@dataclasses.dataclass(frozen=True)
class Session:
    """A signed-in dashboard user: the account, the key they signed in with, the CSRF token."""

    account: dict[str, Any]
    key_id: str
    key_prefix: str
    csrf: str


def _serializer(request: Request) -> itsdangerous.URLSafeTimedSerializer:
    svc = context.services(request)
    cached = svc.extras.get("web.session_serializer")
    if cached is None:
        cached = itsdangerous.URLSafeTimedSerializer(
            svc.rt.settings.secret_key,
            salt="callboard.web.session",
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        svc.extras["web.session_serializer"] = cached
    return cached  # type: ignore[no-any-return]


def _secure(request: Request) -> bool:
    return context.services(request).rt.settings.public_url.startswith("https://")


def live_key(conn: Connection, key_id: str, account_id: str) -> dict[str, Any] | None:
    """The account behind a live key id (None when the key was revoked or is unknown)."""
    k, a = m.api_keys, m.accounts
    row = (
        conn.execute(
            sa.select(a, k.c.prefix.label("key_prefix"))
            .join(k, k.c.account_id == a.c.id)
            .where(k.c.id == key_id, k.c.account_id == account_id, k.c.revoked_at.is_(None))
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def key_id_for(conn: Connection, secret: str) -> tuple[dict[str, Any], str] | None:
    """``(account, key id)`` for a live API key secret, or None."""
    account = accounts.authenticate(conn, secret)
    if account is None:
        return None
    key_id = conn.execute(
        sa.select(m.api_keys.c.id).where(m.api_keys.c.key_hash == accounts.hash_key(secret))
    ).scalar_one()
    return account, key_id


async def current(request: Request) -> Session | None:
    """The request's signed-in session, or None (no cookie, bad or old signature, revoked key)."""
    if _SCOPE_KEY in request.scope:
        return request.scope[_SCOPE_KEY]  # type: ignore[no-any-return]
    found: Session | None = None
    raw = request.cookies.get(COOKIE)
    if raw:
        svc = context.services(request)
        try:
            data = _serializer(request).loads(raw, max_age=int(svc.rt.settings.session_ttl_seconds))
        except itsdangerous.BadData:
            data = None
        if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("k", "a", "c")):
            row = await svc.db.read(lambda conn: live_key(conn, data["k"], data["a"]))
            if row is not None:
                prefix = row.pop("key_prefix")
                found = Session(account=row, key_id=data["k"], key_prefix=prefix, csrf=data["c"])
    request.scope[_SCOPE_KEY] = found
    return found


def sign_in(request: Request, response: Response, *, account_id: str, key_id: str) -> None:
    """Set a fresh session cookie (a new CSRF token each sign-in) and drop the sign-in cookie."""
    token = _serializer(request).dumps({"k": key_id, "a": account_id, "c": secrets.token_urlsafe(24)})
    ttl = int(context.services(request).rt.settings.session_ttl_seconds)
    response.set_cookie(
        COOKIE, token, max_age=ttl, path="/", httponly=True, samesite="lax", secure=_secure(request)
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/ui")


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def signin_nonce(request: Request) -> str:
    """The sign-in form's double-submit token: the visitor's cookie value, or a new one."""
    token = request.cookies.get(SIGNIN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
    return token


def set_signin_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=SIGNIN_TTL_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    parts = urllib.parse.urlsplit(origin)
    return parts.netloc == host


def check_csrf(request: Request, expected: str, submitted: str | None) -> None:
    """Raise :class:`CsrfRejected` unless ``submitted`` matches ``expected`` and the
    request does not come from another origin."""
    if not _same_origin(request):
        raise CsrfRejected("The form was sent from another site.")
    if not submitted or not expected or not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise CsrfRejected("The form's security token is missing or out of date; reload the page and retry.")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site's pages, never another host."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/tasks"
