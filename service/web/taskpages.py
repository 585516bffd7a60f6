"""Task pages: the list (newest first, status filter) and one task with its inputs,
output player, event timeline and webhook deliveries."""

from __future__ import annotations

import base64
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from service import errors, storage, tasks, taskview
from service.api import context
from service.media import refs
from service.runtime import Runtime
from service.web import guard, queries, render, thumbs
from service.web import session as session_mod

PAGE_SIZE = 25


def summary(row: Any, rt: Runtime) -> dict[str, Any]:
    """What the pages show of a task: the API object plus the durations an operator wants."""
    now = rt.now()
    started, finished = row.started_at, row.finished_at
    return {
        "id": row.id,
        "task": taskview.view(row, rt.links),
        "status": row.status,
        "progress": float(row.progress or 0.0) if row.status != "SUCCEEDED" else 1.0,
        "provider": row.provider,
        "created_at": row.created_at,
        "finished_at": finished,
        "waited": (started or finished or now) - row.created_at,
        "ran": ((finished or now) - started) if started is not None else None,
        "total": (finished or now) - row.created_at,
        "active": row.status in taskview.ACTIVE,
        "failure": row.failure,
        "failure_code": row.failure_code,
        "reply_url": row.reply_url,
        "reply_ref": row.reply_ref,
        "outputs": taskview.output_urls(row, rt.links) if row.status == "SUCCEEDED" else [],
    }


@guard.page
async def list_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in taskview.STATUSES:
        raise errors.ValidationError(f"Unknown status {status!r}", field="status")
    cursor = request.query_params.get("cursor") or None
    account_id = session.account["id"]

    def unit(conn: Any) -> tuple[list[Any], str | None, dict[str, int]]:
        rows, next_cursor = tasks.list_tasks(conn, account_id, status=status, limit=PAGE_SIZE, cursor=cursor)
        return rows, next_cursor, queries.status_counts(conn, account_id)

    rows, next_cursor, counts = await svc.db.read(unit)
    return render.page(
        request,
        "tasks.html",
        {
            "items": [summary(r, svc.rt) for r in rows],
            "status": status,
            "statuses": taskview.STATUSES,
            "counts": counts,
            "next_cursor": next_cursor,
            "first_page": cursor is None,
        },
        session=session,
        active="tasks",
    )


def _input_view(task_id: str, role: str, value: dict[str, str]) -> dict[str, Any]:
    uri = value.get("uri", "")
    try:
        kind = refs.classify(uri).kind
    except ValueError:
        kind = "unknown"
    viewable = kind in ("https", "data", "asset", "upload")
    label = (
        uri
        if kind == "https"
        else {
            "data": "inline data URI",
            "asset": "stored input",
            "upload": "uploaded file",
            "runway": uri,
        }.get(kind, uri[:60])
    )
    return {
        "role": role,
        "type": value.get("type", ""),
        "label": label,
        "src": f"/ui/tasks/{task_id}/inputs/{role}" if viewable else None,
    }


@guard.page
async def task_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    task_id = request.path_params["id"]
    account_id = session.account["id"]

    def unit(conn: Any) -> dict[str, Any]:
        row = tasks.get(conn, account_id, task_id)
        return {
            "row": row,
            "spec": tasks.get_spec(conn, task_id),
            "timeline": queries.timeline(conn, account_id, task_id),
            "deliveries": queries.task_deliveries(conn, account_id, task_id),
        }

    found = await svc.db.read(unit)
    spec = found["spec"]
    item = summary(found["row"], svc.rt)
    return render.page(
        request,
        "task.html",
        {
            "item": item,
            "spec": spec,
            "inputs": [_input_view(task_id, role, spec[role]) for role in ("character", "reference")],
            "timeline": found["timeline"],
            "deliveries": found["deliveries"],
        },
        session=session,
        active="tasks",
    )


@guard.page
async def cancel(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    """Cancel an unfinished task, or delete a finished one (the API's DELETE semantics)."""
    svc = context.services(request)
    task_id = request.path_params["id"]
    outcome = await svc.db.write(
        lambda conn: tasks.cancel_or_delete(conn, svc.rt, session.account["id"], task_id)
    )
    target = "/ui/tasks" if outcome == "deleted" else f"/ui/tasks/{task_id}"
    return RedirectResponse(target, status_code=303)


@guard.page
async def input_file(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    """A task's input for the page's preview: stored files and data URIs served from here,
    HTTPS inputs by redirect to their own URL."""
    svc = context.services(request)
    task_id, role = request.path_params["id"], request.path_params["role"]
    if role not in ("character", "reference"):
        raise errors.NotFound("No such input", code="not_found")
    account_id = session.account["id"]

    def unit(conn: Any) -> tuple[str, Any]:
        tasks.get(conn, account_id, task_id)
        uri = tasks.get_spec(conn, task_id)[role]["uri"]
        ref = refs.classify(uri)
        if ref.kind in ("asset", "upload") and ref.asset_id is not None:
            return "asset", queries.input_asset(conn, account_id, ref.asset_id)
        return ref.kind, uri

    kind, value = await svc.db.read(unit)
    if kind == "https":
        return RedirectResponse(value, status_code=302)
    if kind == "data":
        header, _, payload = value.partition(",")
        media_type = header[5:].split(";", 1)[0] or "application/octet-stream"
        return Response(base64.b64decode(payload), media_type=media_type, headers=_PRIVATE)
    if kind == "asset":
        local = storage.from_settings(svc.rt.settings).local_path(value.storage_key)
        if local is None or not local.exists():
            raise errors.NotFound("The file is no longer stored", code="file_not_found")
        return FileResponse(local, media_type=value.content_type, headers=_PRIVATE)
    raise errors.NotFound("This input cannot be previewed here", code="not_found")


_PRIVATE = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}


@guard.page
async def thumbnail(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    data = await thumbs.thumbnail(svc.db, svc.rt, session.account["id"], request.path_params["id"])
    if data is None:
        return RedirectResponse("/ui/static/placeholder.svg", status_code=302)
    return Response(data, media_type="image/jpeg", headers=_PRIVATE)
