"""Runway-compatible task routes: create, retrieve, list, cancel/delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import errors, intake, tasks, taskspec, taskview
from service.api import context
from service.api.responses import JSON, no_content

MAX_PAGE = 100


async def create_character_performance(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    body = await context.read_json(request)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise errors.ValidationError("Idempotency-Key must be 1 to 255 characters", field="Idempotency-Key")
    svc = context.services(request)
    result = await intake.create_task(svc.db, svc.rt, account=account, body=body, idempotency_key=key)
    return JSON(result.response())


async def get_task(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    svc = context.services(request)
    task_id = request.path_params["id"]
    row = await svc.db.read(lambda conn: tasks.get(conn, account["id"], task_id))
    return JSON(taskview.view(row, svc.rt.links))


async def delete_task(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    svc = context.services(request)
    task_id = request.path_params["id"]
    await svc.db.write(lambda conn: tasks.cancel_or_delete(conn, svc.rt, account["id"], task_id))
    return no_content()


async def list_tasks(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    svc = context.services(request)
    status = request.query_params.get("status")
    if status is not None and status not in taskview.STATUSES:
        raise errors.ValidationError(f"status: must be one of {', '.join(taskview.STATUSES)}", field="status")
    limit = context.query_int(request, "limit", 50, 1, MAX_PAGE)
    cursor = request.query_params.get("cursor")
    rows, next_cursor = await svc.db.read(
        lambda conn: tasks.list_tasks(conn, account["id"], status=status, limit=limit, cursor=cursor)
    )
    return JSON({"data": [taskview.view(r, svc.rt.links) for r in rows], "nextCursor": next_cursor})


routes = [
    Route("/v1/character_performance", create_character_performance, methods=["POST"]),
    Route("/v1/tasks", list_tasks, methods=["GET"]),
    Route("/v1/tasks/{id}", get_task, methods=["GET"]),
    Route("/v1/tasks/{id}", delete_task, methods=["DELETE"]),
]

# -- OpenAPI ---------------------------------------------------------------------------
_media = {
    "type": "object",
    "required": ["type", "uri"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "enum": ["image", "video"]},
        "uri": {
            "type": "string",
            "description": "HTTPS URL (13-2048 chars, domain host), runway:// upload URI, or base64 data: URI",
        },
    },
}
_cost_float = {"type": "object", "required": ["credits"], "properties": {"credits": {"type": "number"}}}
_cost_int = {"type": "object", "required": ["credits"], "properties": {"credits": {"type": "integer"}}}

SCHEMAS: dict[str, Any] = {
    "CharacterPerformanceCreate": {
        "type": "object",
        "required": ["model", "character", "reference"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "enum": ["act_two", "runwayml-character-performance"]},
            "character": _media,
            "reference": {
                **_media,
                "properties": {**_media["properties"], "type": {"type": "string", "enum": ["video"]}},
            },
            "bodyControl": {"type": "boolean"},
            "expressionIntensity": {"type": "integer", "minimum": 1, "maximum": 5},
            "ratio": {"type": "string", "enum": list(taskspec.RATIOS)},
            "seed": {"type": "integer", "minimum": 0, "maximum": taskspec.SEED_MAX},
            "contentModeration": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"publicFigureThreshold": {"type": "string", "enum": ["auto", "low"]}},
            },
            "replyUrl": {"type": "string", "maxLength": taskspec.GATEWAY_FIELD_MAX, "format": "uri"},
            "replyRef": {"type": "string", "maxLength": taskspec.GATEWAY_FIELD_MAX},
            "webhookEvents": {
                "type": "array",
                "items": {"type": "string", "enum": list(taskspec.EVENT_TYPES)},
            },
        },
    },
    "CharacterPerformanceCreated": {
        "type": "object",
        "required": ["id", "estimatedCost"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "estimatedCost": _cost_float,
            "replySecret": {
                "type": "string",
                "description": "Secret signing this task's replyUrl deliveries",
            },
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "status", "createdAt"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": list(taskview.STATUSES)},
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "estimatedCost": _cost_float,
            "cost": _cost_int,
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "output": {"type": "array", "items": {"type": "string"}},
            "outputExpired": {"type": "boolean"},
            "failure": {"type": "string"},
            "failureCode": {"type": ["string", "null"]},
            "replyRef": {"type": "string"},
        },
    },
    "TaskList": {
        "type": "object",
        "required": ["data", "nextCursor"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
            "nextCursor": {"type": ["string", "null"]},
        },
    },
}

_id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
PATHS: dict[str, Any] = {
    "/v1/character_performance": {
        "post": {
            "summary": "Create a character-performance task (Runway act_two)",
            "operationId": "createCharacterPerformance",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/CharacterPerformanceCreate"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Task accepted",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CharacterPerformanceCreated"}
                        }
                    },
                }
            },
        }
    },
    "/v1/tasks": {
        "get": {
            "summary": "List the account's tasks, newest first",
            "operationId": "listTasks",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(taskview.STATUSES)},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "A page of tasks",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskList"}}},
                }
            },
        }
    },
    "/v1/tasks/{id}": {
        "get": {
            "summary": "Retrieve a task",
            "operationId": "getTask",
            "parameters": [_id_param],
            "responses": {
                "200": {
                    "description": "The task",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}},
                }
            },
        },
        "delete": {
            "summary": "Cancel an unfinished task, or delete a finished one",
            "operationId": "deleteTask",
            "parameters": [_id_param],
            "responses": {"204": {"description": "Cancelled or deleted"}},
        },
    },
}
