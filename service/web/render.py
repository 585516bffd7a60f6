"""Rendering pages: the Jinja2 environment (built once per app, on first use) and filters.

Templates live in ``service/web/templates`` and are shipped in the package; autoescape
is on for every template, so a task's ``replyRef`` or a receiver's response body can
never inject markup.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service import __version__, clock
from service.api import context
from service.web import session as session_mod

#: Security headers every page carries: no framing (clickjacking on the resend and
#: rotate buttons), no inline scripts from anywhere, every asset from Callboard itself.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https: blob:; media-src 'self' https: blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(ts: float | None) -> str:
    """A timestamp as ``2026-11-18 10:04:05 UTC`` (empty for None)."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.4 s``, ``3 min 05 s``, ``2 h 10 min`` (empty for None)."""
    if seconds is None:
        return ""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def percent(value: float | None) -> str:
    return f"{(value or 0.0) * 100:.0f}%"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("service.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["percent"] = percent
    env.filters["iso"] = lambda ts: clock.iso(ts) if ts is not None else ""
    env.globals["version"] = __version__
    return env


def environment(request: Request) -> jinja2.Environment:
    svc = context.services(request)
    env = svc.extras.get("web.jinja")
    if env is None:
        env = _environment()
        svc.extras["web.jinja"] = env
    return env  # type: ignore[no-any-return]


def page(
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    session: session_mod.Session | None,
    status_code: int = 200,
    active: str = "",
) -> HTMLResponse:
    """Render ``template`` with the common values (session, CSRF token, active nav item)."""
    body = (
        environment(request)
        .get_template(template)
        .render(
            request_path=request.url.path,
            session=session,
            csrf=session.csrf if session is not None else "",
            active=active,
            **values,
        )
    )
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)
