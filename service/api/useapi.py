"""useapi.net-style routes under ``/v1/runwayml/`` (see ``service.compat``).

Errors on these routes use that API's shape, ``{"error": message, "code": status}``
(plus ``field`` for validation), and an account already running ``maxJobs`` tasks is
answered 429 with the running task ids, as that API does.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import compat, errors, intake, storage, tasks, taskview
from service import models as m
from service.api import context
from service.api.responses import JSON, no_content
from service.media import assets as media_assets
from service.media import uploads

Handler = Callable[[Request], Awaitable[Response]]
PREFIX = "/v1/runwayml"


class Busy(errors.ServiceError):
    status = 429
    code = "account_busy"


def useapi_errors(handler: Handler) -> Handler:
    """Answer this front's errors in its own shape."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except errors.ServiceError as exc:
            body: dict[str, Any] = {"error": exc.message, "code": exc.status}
            if exc.field is not None:
                body["field"] = exc.field
            body.update(exc.extra)
            return JSON(body, status_code=exc.status, headers=exc.headers)

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        async with request.form(max_files=0, max_fields=50) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return compat.coerce_form(fields)
    if ctype.startswith("application/x-www-form-urlencoded"):
        raw = await context.read_body(request)
        if not raw.lstrip().startswith(b"{"):  # a real form; curl -d '{...}' sends JSON with this label
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            return compat.coerce_form(dict(pairs))
        body = context.parse_json(raw)
    else:
        body = await context.read_json(request)
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    return body


def _active_ids(conn: Any, account_id: str) -> list[str]:
    t = m.tasks
    return list(
        conn.execute(
            sa.select(t.c.id)
            .where(t.c.account_id == account_id, t.c.status.in_(taskview.ACTIVE), t.c.deleted_at.is_(None))
            .order_by(t.c.created_at)
        ).scalars()
    )


async def _create(request: Request, *, act_one: bool) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    body = await _body(request)
    driving_id, character_id = compat.asset_ids(body, act_one=act_one)
    limit = compat.max_jobs(body) or account["max_jobs"]

    def lookup(conn: Any) -> tuple[Any, Any, list[str]]:
        return (
            media_assets.get(conn, account["id"], driving_id),
            media_assets.get(conn, account["id"], character_id),
            _active_ids(conn, account["id"]),
        )

    driving, character, active = await svc.db.read(lookup)
    spec = compat.build_spec(body, act_one=act_one, driving=driving, character=character, allow=svc.rt.allow)
    if len(active) >= limit:
        raise Busy(
            f"Account busy: {len(active)} tasks are running and maxJobs is {limit}; retry when one finishes",
            extra={"runningTasks": active},
            headers={"Retry-After": "10"},
        )
    result = await intake.create_from_spec(svc.db, svc.rt, account=account, spec=spec)
    # the created row already holds every column the view needs: no read-back
    return JSON(compat.task_view(result.row, spec.to_json(), svc.rt.links))


@useapi_errors
async def act_two(request: Request) -> Response:
    return await _create(request, act_one=False)


@useapi_errors
async def act_one(request: Request) -> Response:
    return await _create(request, act_one=True)


@useapi_errors
async def get_task(request: Request) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    task_id = request.path_params["task_id"]

    def unit(conn: Any) -> tuple[Any, dict[str, Any]]:
        row = tasks.get(conn, account["id"], task_id)
        return row, tasks.get_spec(conn, task_id)

    row, spec = await svc.db.read(unit)
    return JSON(compat.task_view(row, spec, svc.rt.links))


@useapi_errors
async def list_tasks(request: Request) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    offset = context.query_int(request, "offset", 0, 0, 1000)
    limit = context.query_int(request, "limit", 20, 1, 1000)
    statuses = [s for s in request.query_params.get("statuses", "").split(",") if s]
    for status in statuses:
        if status not in taskview.STATUSES:
            raise errors.ValidationError(f"statuses: unknown status {status!r}", field="statuses")
    t = m.tasks

    def unit(conn: Any) -> list[tuple[Any, dict[str, Any]]]:
        query = sa.select(*taskview.COLUMNS, t.c.spec).where(
            t.c.account_id == account["id"], t.c.deleted_at.is_(None)
        )
        if statuses:
            query = query.where(t.c.status.in_(statuses))
        rows = conn.execute(
            query.order_by(t.c.created_at.desc(), t.c.id.desc()).offset(offset).limit(limit)
        ).all()
        return [(row, row.spec) for row in rows]

    rows = await svc.db.read(unit)
    return JSON([compat.task_view(row, spec, svc.rt.links) for row, spec in rows])


@useapi_errors
async def create_asset(request: Request) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    name = request.query_params.get("name")
    if not name or len(name) > 255:
        raise errors.ValidationError("name: is required (?name=...), 1 to 255 characters", field="name")
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise errors.UnsupportedMediaType(
            "Send the file itself as the request body with its Content-Type (e.g. video/mp4)", field="body"
        )
    row = await uploads.store_body(
        svc.db,
        svc.rt,
        account_id=account["id"],
        filename=name,
        content_length=request.headers.get("content-length"),
        stream=request.stream(),
    )
    stored = await svc.db.read(lambda conn: media_assets.get(conn, account["id"], row["id"]))
    return JSON(compat.asset_view(stored))


@useapi_errors
async def list_assets(request: Request) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    media_type = request.query_params.get("mediaType")
    if media_type is not None and media_type not in ("image", "video"):
        raise errors.ValidationError("mediaType: must be 'image' or 'video'", field="mediaType")
    offset = context.query_int(request, "offset", 0, 0, 100_000)
    limit = context.query_int(request, "limit", 100, 1, 1000)
    a = m.assets

    def unit(conn: Any) -> list[Any]:
        query = sa.select(a).where(
            a.c.account_id == account["id"],
            a.c.kind == "upload",
            a.c.deleted_at.is_(None),
            a.c.storage_key.is_not(None),
        )
        return list(
            conn.execute(query.order_by(a.c.created_at.desc(), a.c.id.desc()).offset(offset).limit(limit))
        )

    rows = await svc.db.read(unit)
    views = [compat.asset_view(r) for r in rows]
    if media_type is not None:
        views = [v for v in views if v["mediaType"] == media_type]
    return JSON({"assets": views})


@useapi_errors
async def delete_asset(request: Request) -> Response:
    account = await context.account(request)
    svc = context.services(request)
    asset_id = request.path_params["asset_id"]
    a = m.assets

    def unit(conn: Any) -> str | None:
        row = media_assets.get(conn, account["id"], asset_id)
        if row is None or row.kind != "upload":
            raise errors.NotFound("Asset not found", code="asset_not_found")
        conn.execute(a.update().where(a.c.id == asset_id).values(deleted_at=svc.rt.now()))
        return row.storage_key

    key = await svc.db.write(unit)
    if key:
        storage.from_settings(svc.rt.settings).delete(key)
    return no_content()


routes = [
    Route(f"{PREFIX}/gen4/act-two", act_two, methods=["POST"]),
    Route(f"{PREFIX}/gen3/actone", act_one, methods=["POST"]),
    Route(f"{PREFIX}/gen3turbo/actone", act_one, methods=["POST"]),
    Route(f"{PREFIX}/tasks/", list_tasks, methods=["GET"]),
    Route(f"{PREFIX}/tasks/{{task_id}}", get_task, methods=["GET"]),
    Route(f"{PREFIX}/assets/", create_asset, methods=["POST"]),
    Route(f"{PREFIX}/assets", create_asset, methods=["POST"]),
    Route(f"{PREFIX}/assets/", list_assets, methods=["GET"]),
    Route(f"{PREFIX}/assets/{{asset_id}}", delete_asset, methods=["DELETE"]),
]

# -- OpenAPI ---------------------------------------------------------------------------
_err = {"application/json": {"schema": {"$ref": "#/components/schemas/UseapiError"}}}
_errors = {
    code: {"description": text, "content": _err}
    for code, text in {
        "400": "Invalid request (names the field)",
        "401": "Missing, unknown or revoked API key",
        "404": "Not found",
        "405": "Method not allowed",
        "413": "Body too large",
        "415": "Unsupported content type",
        "422": "Unprocessable",
        "429": "Account busy running maxJobs tasks, or rate limited",
    }.items()
}
_create_body = {
    "type": "object",
    "required": ["driving_assetId", "character_assetId"],
    "properties": {
        "driving_assetId": {"type": "string"},
        "character_assetId": {"type": "string"},
        "aspect_ratio": {"type": "string", "enum": list(compat.ASPECT_RATIOS)},
        "body_control": {"type": "boolean"},
        "expression_intensity": {"type": "integer", "minimum": 1, "maximum": 5},
        "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "exploreMode": {"type": "boolean"},
        "replyUrl": {"type": "string", "maxLength": 1024},
        "replyRef": {"type": "string", "maxLength": 1024},
        "maxJobs": {"type": "integer", "minimum": 1, "maximum": 10},
    },
}
_actone_body = {
    "type": "object",
    "required": ["driving_assetId", "character_assetId"],
    "properties": {
        "driving_assetId": {"type": "string"},
        "character_assetId": {"type": "string"},
        "motion_multiplier": {"type": "integer", "minimum": 1, "maximum": 5},
        "aspect_ratio": {"type": "string", "enum": list(compat.ACTONE_ASPECT_RATIOS)},
        "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "exploreMode": {"type": "boolean"},
        "replyUrl": {"type": "string", "maxLength": 1024},
        "replyRef": {"type": "string", "maxLength": 1024},
        "maxJobs": {"type": "integer", "minimum": 1, "maximum": 10},
    },
}
_task = {"application/json": {"schema": {"$ref": "#/components/schemas/UseapiTask"}}}


def _create_op(op_id: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": op_id,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "The task", "content": _task}, **_errors},
    }


SCHEMAS: dict[str, Any] = {
    "UseapiError": {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string"},
            "code": {"type": "integer"},
            "field": {"type": "string"},
            "runningTasks": {"type": "array", "items": {"type": "string"}},
        },
    },
    "UseapiTask": {
        "type": "object",
        "required": ["taskId", "status", "createdAt", "artifacts"],
        "properties": {
            "taskId": {"type": "string"},
            "status": {"type": "string", "enum": list(taskview.STATUSES)},
            "createdAt": {"type": "string"},
            "updatedAt": {"type": "string"},
            "error": {"type": ["string", "null"]},
            "progressRatio": {"type": "string"},
            "artifacts": {"type": "array", "items": {"type": "object"}},
        },
    },
    "UseapiAsset": {
        "type": "object",
        "required": ["assetId"],
        "properties": {
            "assetId": {"type": "string"},
            "mediaType": {"type": ["string", "null"]},
            "fileSize": {"type": ["integer", "null"]},
        },
    },
}
PATHS: dict[str, Any] = {
    f"{PREFIX}/gen4/act-two": {
        "post": _create_op("useapiActTwo", "Act-Two from two assets (useapi.net style)", _create_body)
    },
    f"{PREFIX}/gen3/actone": {
        "post": _create_op("useapiActOne", "Act-One from two assets (useapi.net style)", _actone_body)
    },
    f"{PREFIX}/gen3turbo/actone": {
        "post": _create_op(
            "useapiActOneTurbo", "Act-One Turbo from two assets (useapi.net style)", _actone_body
        )
    },
    f"{PREFIX}/tasks/": {
        "get": {
            "summary": "List tasks (useapi.net style)",
            "operationId": "useapiListTasks",
            "parameters": [
                {
                    "name": "offset",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "statuses", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "Tasks",
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/UseapiTask"}}
                        }
                    },
                },
                **_errors,
            },
        }
    },
    f"{PREFIX}/tasks/{{task_id}}": {
        "get": {
            "summary": "Retrieve a task (useapi.net style)",
            "operationId": "useapiGetTask",
            "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The task", "content": _task}, **_errors},
        }
    },
    f"{PREFIX}/assets/": {
        "post": {
            "summary": "Upload an asset as the raw request body (useapi.net style)",
            "operationId": "useapiCreateAsset",
            "parameters": [
                {
                    "name": "name",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "The asset",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UseapiAsset"}}},
                },
                **_errors,
            },
        },
        "get": {
            "summary": "List assets (useapi.net style)",
            "operationId": "useapiListAssets",
            "parameters": [
                {
                    "name": "mediaType",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["image", "video"]},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": {
                    "description": "Assets",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "assets": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/UseapiAsset"},
                                    }
                                },
                            }
                        }
                    },
                },
                **_errors,
            },
        },
    },
    f"{PREFIX}/assets": {
        "post": {
            "summary": "Upload an asset (same as /assets/)",
            "operationId": "useapiCreateAssetNoSlash",
            "parameters": [{"name": "name", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The asset"}, **_errors},
        }
    },
    f"{PREFIX}/assets/{{asset_id}}": {
        "delete": {
            "summary": "Delete an asset (useapi.net style)",
            "operationId": "useapiDeleteAsset",
            "parameters": [
                {"name": "asset_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"204": {"description": "Deleted"}, **_errors},
        }
    },
}
