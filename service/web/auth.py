"""Sign-in (with an API key) and sign-out pages."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.api import context
from service.web import guard, render
from service.web import session as session_mod


async def signin_form(request: Request) -> Response:
    current = await session_mod.current(request)
    target = session_mod.safe_next(request.query_params.get("next"))
    if current is not None:
        return RedirectResponse(target, status_code=303)
    return _form(request, target=target, error=None, status_code=200)


def _form(request: Request, *, target: str, error: str | None, status_code: int) -> Response:
    token = session_mod.signin_nonce(request)
    response = render.page(
        request,
        "signin.html",
        {"next": target, "signin_csrf": token, "error": error},
        session=None,
        status_code=status_code,
    )
    session_mod.set_signin_cookie(request, response, token)
    return response


async def signin(request: Request) -> Response:
    """Check the double-submit token, then the key; a good key sets the session cookie."""
    form = await guard.read_form(request)
    try:
        target = session_mod.safe_next(guard.field(form, "next"))
        cookie = request.cookies.get(session_mod.SIGNIN_COOKIE, "")
        submitted = guard.field(form, session_mod.CSRF_FIELD)
        try:
            session_mod.check_csrf(request, cookie, submitted)
        except session_mod.CsrfRejected as exc:
            return _form(request, target=target, error=str(exc), status_code=403)
        key = guard.field(form, "api_key")
        if not key:
            return _form(request, target=target, error="Enter an API key.", status_code=400)
        svc = context.services(request)
        found = await svc.db.read(lambda conn: session_mod.key_id_for(conn, key))
        if found is None:
            return _form(request, target=target, error="That API key is unknown or revoked.", status_code=401)
        account, key_id = found
        response = RedirectResponse(target, status_code=303)
        session_mod.sign_in(request, response, account_id=account["id"], key_id=key_id)
        return response
    finally:
        await form.close()


async def signout(request: Request) -> Response:
    """Sign out (POST with the session's CSRF token; a stale token still clears the cookie
    of a session that no longer exists)."""
    current = await session_mod.current(request)
    form = await guard.read_form(request)
    try:
        if current is not None:
            submitted = guard.field(form, session_mod.CSRF_FIELD)
            if not submitted or not hmac.compare_digest(submitted.encode(), current.csrf.encode()):
                return guard.error_page(
                    request,
                    403,
                    "Request refused",
                    "The sign-out form is out of date; reload and retry.",
                    current,
                )
        response = RedirectResponse("/ui/signin", status_code=303)
        session_mod.sign_out(response)
        return response
    finally:
        await form.close()
