"""Webhook pages: endpoints with their health, the delivery log with request and response
detail, and the operator's buttons (resend, recover, test event, reveal/rotate secret,
enable/disable, add/delete). Every button is a CSRF-checked POST calling the same
domain function as the API route (``service.webhooks``)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import errors
from service.api import context
from service.web import guard, queries, render
from service.web import session as session_mod
from service.webhooks import endpoints, history

RECOVER_WINDOWS = {"1h": 3600.0, "24h": 86400.0, "3d": 3 * 86400.0, "7d": 7 * 86400.0}
NOTICES = {
    "created": "Endpoint added. Its signing secret is shown below: store it now.",
    "test": "A signed webhook.test event is queued for this endpoint.",
    "rotated": "A new secret is active; the previous one keeps signing for 24 hours.",
    "enabled": "The endpoint is enabled again.",
    "disabled": "The endpoint is disabled; queued deliveries were stopped.",
    "resent": "The delivery is queued to be sent again now (same webhook-id).",
}
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


@guard.page
async def list_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    account_id = session.account["id"]

    def unit(conn: Any) -> tuple[list[dict[str, Any]], list[Any]]:
        return queries.endpoints(conn, account_id), queries.failed_deliveries(conn, account_id)

    rows, failed = await svc.db.read(unit)
    return _list(request, session, rows, failed, error=None, values={})


def _list(
    request: Request,
    session: session_mod.Session,
    rows: list[dict[str, Any]],
    failed: list[Any],
    *,
    error: errors.ServiceError | None,
    values: dict[str, Any],
    status_code: int = 200,
) -> Response:
    return render.page(
        request,
        "webhooks.html",
        {
            "endpoints": rows,
            "failed": failed,
            "event_types": endpoints.EVENT_TYPES,
            "error": error.message if error else None,
            "values": values,
            "notice": _notice(request),
        },
        session=session,
        status_code=status_code,
        active="webhooks",
    )


@guard.page
async def create(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    assert form is not None
    svc = context.services(request)
    account_id = session.account["id"]
    types = [t for t in form.getlist("eventTypes") if isinstance(t, str)]
    body: dict[str, Any] = {"url": guard.field(form, "url"), "eventTypes": types or None}
    description = guard.field(form, "description")
    if description:
        body["description"] = description
    try:
        values = endpoints.parse_subscription(body, svc.rt.allow, partial=False)
        row = await svc.db.write(
            lambda conn: endpoints.create(
                conn, account_id=account_id, kind="subscription", values=values, now=svc.rt.now()
            )
        )
    except errors.ValidationError as exc:
        rows, failed = await svc.db.read(
            lambda conn: (queries.endpoints(conn, account_id), queries.failed_deliveries(conn, account_id))
        )
        return _list(request, session, rows, failed, error=exc, values=body, status_code=400)
    return await _endpoint(request, session, row.id, secret=row.secret, notice=NOTICES["created"])


@guard.page
async def endpoint_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    return await _endpoint(request, session, request.path_params["id"], secret=None, notice=None)


async def _endpoint_data(request: Request, session: session_mod.Session, endpoint_id: str) -> dict[str, Any]:
    svc = context.services(request)
    account_id = session.account["id"]
    status = request.query_params.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise errors.ValidationError(f"Unknown delivery status {status!r}", field="status")

    def unit(conn: Any) -> dict[str, Any]:
        endpoints.get(conn, account_id, endpoint_id, kinds=("subscription", "hook"))
        health = next(e for e in queries.endpoints(conn, account_id) if e["id"] == endpoint_id)
        return {
            "endpoint": health,
            "deliveries": queries.endpoint_deliveries(conn, account_id, endpoint_id, status=status),
            "status": status,
        }

    return await svc.db.read(unit)


async def _endpoint(
    request: Request,
    session: session_mod.Session,
    endpoint_id: str,
    *,
    secret: str | None,
    notice: str | None,
) -> Response:
    data = await _endpoint_data(request, session, endpoint_id)
    return render.page(
        request,
        "endpoint.html",
        {
            **data,
            "secret": secret,
            "notice": notice or _notice(request),
            "windows": RECOVER_WINDOWS,
            "statuses": DELIVERY_STATUSES,
        },
        session=session,
        active="webhooks",
    )


async def _action(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    """One endpoint button: ``test``, ``secret`` (reveal), ``rotate``, ``enable``, ``disable``,
    ``recover`` or ``delete``."""
    svc = context.services(request)
    account_id = session.account["id"]
    endpoint_id = request.path_params["id"]
    action = request.path_params["action"]
    now = svc.rt.now()
    kinds = ("subscription", "hook")
    back = f"/ui/webhooks/{endpoint_id}"
    if action == "secret":
        row = await svc.db.read(lambda conn: endpoints.get(conn, account_id, endpoint_id, kinds=kinds))
        return await _endpoint(request, session, endpoint_id, secret=row.secret, notice=None)
    if action == "rotate":
        row = await svc.db.write(
            lambda conn: endpoints.rotate_secret(
                conn, account_id=account_id, endpoint_id=endpoint_id, now=now
            )
        )
        return await _endpoint(request, session, endpoint_id, secret=row.secret, notice=NOTICES["rotated"])
    if action == "test":
        await svc.db.write(
            lambda conn: endpoints.send_test(conn, account_id=account_id, endpoint_id=endpoint_id, now=now)
        )
        return RedirectResponse(back + "?notice=test", status_code=303)
    if action in ("enable", "disable"):
        enabled = action == "enable"
        await svc.db.write(
            lambda conn: endpoints.update(
                conn, account_id=account_id, endpoint_id=endpoint_id, values={"enabled": enabled}, now=now
            )
        )
        return RedirectResponse(back + f"?notice={action}d", status_code=303)
    if action == "recover":
        window = RECOVER_WINDOWS.get(guard.field(form, "window"))
        if window is None:
            raise errors.ValidationError("Choose how far back to resend failed deliveries", field="window")
        count, more = await svc.db.write(
            lambda conn: history.recover(conn, account_id, endpoint_id, now - window, now)
        )
        text = f"{count} failed deliver{'y' if count == 1 else 'ies'} queued to be sent again"
        text += " (more remain: press the button again)." if more else "."
        return await _endpoint(request, session, endpoint_id, secret=None, notice=text)
    if action == "delete":
        await svc.db.write(
            lambda conn: endpoints.delete(
                conn, account_id=account_id, endpoint_id=endpoint_id, now=now, kinds=kinds
            )
        )
        return RedirectResponse("/ui/webhooks", status_code=303)
    raise errors.NotFound("No such action", code="not_found")


action = guard.page(_action)


@guard.page
async def delivery_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    account_id = session.account["id"]
    delivery_id = request.path_params["id"]

    def unit(conn: Any) -> tuple[Any, list[Any]]:
        row = queries.delivery(conn, account_id, delivery_id)
        return row, queries.attempts(conn, delivery_id)

    row, attempts = await svc.db.read(unit)
    try:
        body = orjson.dumps(orjson.loads(row.event_body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = row.event_body
    return render.page(
        request,
        "delivery.html",
        {
            "d": row,
            "attempts": attempts,
            "body": body,
            "body_size": len(row.event_body.encode()),
            "notice": _notice(request),
        },
        session=session,
        active="webhooks",
    )


@guard.page
async def retry(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    """Resend one delivery now (same webhook-id), then show it."""
    svc = context.services(request)
    delivery_id = request.path_params["id"]
    await svc.db.write(lambda conn: history.retry(conn, session.account["id"], delivery_id, svc.rt.now()))
    return RedirectResponse(f"/ui/deliveries/{delivery_id}?notice=resent", status_code=303)
