"""What every dashboard handler needs before it runs: a session, a checked form, HTML errors.

:func:`page` wraps a handler ``(request, session, form) -> Response``:

* no session → 303 to the sign-in page (returning here afterwards);
* POST → the form is parsed (size-capped by ``CALLBOARD_MAX_BODY_BYTES``) and its CSRF
  token checked before the handler sees it; a bad token is a 403 page;
* a domain error (``errors.ServiceError``) becomes an HTML page with its status and
  message instead of the API's JSON, so a mistyped id is a readable 404.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import errors
from service.api import context
from service.web import render
from service.web import session as session_mod

Handler = Callable[[Request, session_mod.Session, FormData | None], Awaitable[Response]]
MAX_FORM_FILES = 4
MAX_FORM_FIELDS = 50


def error_page(
    request: Request, status: int, title: str, message: str, session: session_mod.Session | None
) -> Response:
    return render.page(
        request,
        "error.html",
        {"title": title, "message": message, "status": status},
        session=session,
        status_code=status,
    )


async def read_form(request: Request) -> FormData:
    """The POSTed form, refused with 413 past the body limit (checked before parsing)."""
    limit = context.services(request).rt.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > limit:
        raise errors.PayloadTooLarge(
            f"The form is larger than the {limit // (1024 * 1024)} MB allowed"
            if declared and declared.isdigit()
            else "Send the form with a Content-Length"
        )
    return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)


def signin_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = "/ui/tasks"
    return RedirectResponse("/ui/signin?" + urllib.parse.urlencode({"next": target}), status_code=303)


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        session = await session_mod.current(request)
        if session is None:
            return signin_redirect(request)
        form: FormData | None = None
        try:
            if request.method == "POST":
                form = await read_form(request)
                token = form.get(session_mod.CSRF_FIELD) or request.headers.get(session_mod.CSRF_HEADER)
                session_mod.check_csrf(request, session.csrf, token if isinstance(token, str) else None)
            return await handler(request, session, form)
        except session_mod.CsrfRejected as exc:
            return error_page(request, 403, "Request refused", str(exc), session)
        except errors.ServiceError as exc:
            return error_page(request, exc.status, _title(exc.status), exc.message, session)
        finally:
            if form is not None:
                await form.close()

    return wrapped


def _title(status: int) -> str:
    return {
        400: "Please check the form",
        404: "Not found",
        413: "Too large",
        429: "Too many requests",
    }.get(status, "Something went wrong")


def field(form: FormData | None, name: str) -> str:
    """A text field's value ('' when absent or a file)."""
    if form is None:
        return ""
    value: Any = form.get(name)
    return value.strip() if isinstance(value, str) else ""
