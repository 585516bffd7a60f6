"""Webhook routes: subscriptions, secrets, test events, the delivery log, replay and
recovery, REST Hooks for Zapier/Make, and the event feed for polling triggers.

Handlers parse, authorise and call the domain in ``service.webhooks``; another
account's endpoint, delivery or task is a 404, exactly like an unknown id.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import clock, errors
from service.api import context
from service.api.responses import JSON, no_content
from service.webhooks import endpoints, feed, history, views

MAX_PAGE = 100
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


async def _begin(request: Request) -> tuple[dict[str, Any], context.Services]:
    return await context.account(request), context.services(request)


# -- subscriptions ---------------------------------------------------------------------
async def create_webhook(request: Request) -> Response:
    account, svc = await _begin(request)
    values = endpoints.parse_subscription(await context.read_json(request), svc.rt.allow, partial=False)
    row = await svc.db.write(
        lambda conn: endpoints.create(
            conn, account_id=account["id"], kind="subscription", values=values, now=svc.rt.now()
        )
    )
    return JSON({**views.endpoint(row), "secret": row.secret}, status_code=201)


async def list_webhooks(request: Request) -> Response:
    account, svc = await _begin(request)
    rows = await svc.db.read(lambda conn: endpoints.list_endpoints(conn, account["id"]))
    return JSON({"data": [views.endpoint(r) for r in rows]})


async def get_webhook(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    row = await svc.db.read(lambda conn: endpoints.get(conn, account["id"], endpoint_id))
    return JSON(views.endpoint(row))


async def update_webhook(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    values = endpoints.parse_subscription(await context.read_json(request), svc.rt.allow, partial=True)
    row = await svc.db.write(
        lambda conn: endpoints.update(
            conn, account_id=account["id"], endpoint_id=endpoint_id, values=values, now=svc.rt.now()
        )
    )
    return JSON(views.endpoint(row))


async def delete_webhook(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    await svc.db.write(
        lambda conn: endpoints.delete(
            conn, account_id=account["id"], endpoint_id=endpoint_id, now=svc.rt.now(), kinds=("subscription",)
        )
    )
    return no_content()


async def reveal_secret(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    row = await svc.db.read(lambda conn: endpoints.get(conn, account["id"], endpoint_id))
    return JSON({"secret": row.secret})


async def rotate_secret(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    row = await svc.db.write(
        lambda conn: endpoints.rotate_secret(
            conn, account_id=account["id"], endpoint_id=endpoint_id, now=svc.rt.now()
        )
    )
    return JSON({"secret": row.secret, "previousSecretExpiresAt": clock.iso(row.previous_secret_expires_at)})


async def send_test(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    event_id, delivery_id = await svc.db.write(
        lambda conn: endpoints.send_test(
            conn, account_id=account["id"], endpoint_id=endpoint_id, now=svc.rt.now()
        )
    )
    return JSON({"eventId": event_id, "deliveryId": delivery_id}, status_code=202)


async def recover(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    body = await context.read_json(request)
    raw = body.get("since") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise errors.ValidationError("since: is required, an ISO-8601 time", field="since")
    try:
        since = clock.parse_iso(raw)
    except ValueError:
        raise errors.ValidationError("since: must be an ISO-8601 time", field="since") from None
    count, more = await svc.db.write(
        lambda conn: history.recover(conn, account["id"], endpoint_id, since, svc.rt.now())
    )
    return JSON({"resent": count, "more": more}, status_code=202)


# -- the delivery log ------------------------------------------------------------------
async def webhook_deliveries(request: Request) -> Response:
    account, svc = await _begin(request)
    endpoint_id = request.path_params["id"]
    status = request.query_params.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise errors.ValidationError(f"status: must be one of {', '.join(DELIVERY_STATUSES)}", field="status")
    limit = context.query_int(request, "limit", 50, 1, MAX_PAGE)
    cursor = request.query_params.get("cursor")
    rows, attempts, next_cursor = await svc.db.read(
        lambda conn: history.list_for_endpoint(
            conn, account["id"], endpoint_id, status=status, limit=limit, cursor=cursor
        )
    )
    return JSON({"data": [views.delivery(r, attempts[r.id]) for r in rows], "nextCursor": next_cursor})


async def task_deliveries(request: Request) -> Response:
    account, svc = await _begin(request)
    task_id = request.path_params["id"]
    rows, attempts = await svc.db.read(lambda conn: history.list_for_task(conn, account["id"], task_id))
    return JSON({"data": [views.delivery(r, attempts[r.id]) for r in rows]})


async def get_delivery(request: Request) -> Response:
    account, svc = await _begin(request)
    delivery_id = request.path_params["id"]
    row, attempts = await svc.db.read(lambda conn: history.get(conn, account["id"], delivery_id))
    return JSON(views.delivery(row, attempts))


async def retry_delivery(request: Request) -> Response:
    account, svc = await _begin(request)
    delivery_id = request.path_params["id"]
    row, attempts = await svc.db.write(
        lambda conn: history.retry(conn, account["id"], delivery_id, svc.rt.now())
    )
    return JSON(views.delivery(row, attempts), status_code=202)


# -- REST Hooks and the event feed -------------------------------------------------------
async def create_hook(request: Request) -> Response:
    account, svc = await _begin(request)
    body = await context.read_json(request)
    row = await svc.db.write(
        lambda conn: endpoints.create_hook(
            conn, account_id=account["id"], body=body, allow=svc.rt.allow, now=svc.rt.now()
        )
    )
    return JSON({**views.hook(row), "secret": row.secret}, status_code=201)


async def delete_hook(request: Request) -> Response:
    account, svc = await _begin(request)
    hook_id = request.path_params["id"]
    await svc.db.write(
        lambda conn: endpoints.delete_hook(conn, account_id=account["id"], hook_id=hook_id, now=svc.rt.now())
    )
    return no_content()


async def list_events(request: Request) -> Response:
    account, svc = await _begin(request)
    event_type = feed.parse_type(request.query_params.get("type"))
    limit = context.query_int(request, "limit", 50, 1, feed.LIMIT_MAX)
    items = await svc.db.read(
        lambda conn: feed.list_events(
            conn, account["id"], event_type=event_type, limit=limit, now=svc.rt.now()
        )
    )
    return JSON(items)


routes = [
    Route("/v1/webhooks", create_webhook, methods=["POST"]),
    Route("/v1/webhooks", list_webhooks, methods=["GET"]),
    Route("/v1/webhooks/{id}", get_webhook, methods=["GET"]),
    Route("/v1/webhooks/{id}", update_webhook, methods=["PATCH"]),
    Route("/v1/webhooks/{id}", delete_webhook, methods=["DELETE"]),
    Route("/v1/webhooks/{id}/secret", reveal_secret, methods=["GET"]),
    Route("/v1/webhooks/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/webhooks/{id}/test", send_test, methods=["POST"]),
    Route("/v1/webhooks/{id}/recover", recover, methods=["POST"]),
    Route("/v1/webhooks/{id}/deliveries", webhook_deliveries, methods=["GET"]),
    Route("/v1/tasks/{id}/deliveries", task_deliveries, methods=["GET"]),
    Route("/v1/deliveries/{id}", get_delivery, methods=["GET"]),
    Route("/v1/deliveries/{id}/retry", retry_delivery, methods=["POST"]),
    Route("/v1/hooks", create_hook, methods=["POST"]),
    Route("/v1/hooks/{id}", delete_hook, methods=["DELETE"]),
    Route("/v1/events", list_events, methods=["GET"]),
]

# -- OpenAPI ---------------------------------------------------------------------------
_ts = {"type": ["string", "null"], "format": "date-time"}
_event_types = {"type": "array", "items": {"type": "string", "enum": list(endpoints.EVENT_TYPES)}}
SCHEMAS: dict[str, Any] = {
    "WebhookWrite": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": endpoints.URL_MAX},
            "eventTypes": {**_event_types, "type": ["array", "null"], "minItems": 1},
            "description": {"type": ["string", "null"], "maxLength": 1000},
            "enabled": {"type": "boolean"},
            "rateLimit": {"type": ["integer", "null"], "minimum": 1, "maximum": endpoints.RATE_MAX},
            "maxConcurrency": {"type": "integer", "minimum": 1, "maximum": endpoints.CONCURRENCY_MAX},
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "enabled", "createdAt"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "eventTypes": {**_event_types, "type": ["array", "null"]},
            "enabled": {"type": "boolean"},
            "disabledReason": {"type": ["string", "null"]},
            "disabledAt": _ts,
            "rateLimit": {"type": ["integer", "null"]},
            "maxConcurrency": {"type": "integer"},
            "lastSuccessAt": _ts,
            "failingSince": _ts,
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "secret": {"type": "string", "description": "Only in the create answer"},
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "trigger": {"type": "string", "enum": ["scheduled", "manual"]},
            "startedAt": {"type": "string", "format": "date-time"},
            "statusCode": {"type": ["integer", "null"]},
            "latencyMs": {"type": ["number", "null"]},
            "errorClass": {"type": ["string", "null"]},
            "responseBody": {"type": ["string", "null"], "description": "At most 20 KB"},
            "nextAttemptAt": _ts,
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "The webhook-id header, the same on every attempt"},
            "eventId": {"type": "string"},
            "eventType": {"type": "string"},
            "endpointId": {"type": "string"},
            "taskId": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
            "attemptCount": {"type": "integer"},
            "nextAttemptAt": _ts,
            "lastStatusCode": {"type": ["integer", "null"]},
            "lastError": {"type": ["string", "null"]},
            "createdAt": {"type": "string", "format": "date-time"},
            "succeededAt": _ts,
            "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "type", "timestamp", "data"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {"type": "object"},
            "sample": {
                "type": "boolean",
                "description": "Present (true) only on the sample of an empty feed",
            },
        },
    },
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _op(summary: str, op_id: str, code: str = "200", ref: str | None = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": summary}
    if ref is not None:
        response["content"] = _json(ref)
    return {"summary": summary, "operationId": op_id, "responses": {code: response}, **extra}


_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_body = {"required": True, "content": _json("WebhookWrite")}
_page = [
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(DELIVERY_STATUSES)}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
_obj = {"application/json": {"schema": {"type": "object"}}}
PATHS: dict[str, Any] = {
    "/v1/webhooks": {
        "post": _op(
            "Create a webhook subscription (the secret is shown once here)",
            "createWebhook",
            "201",
            "Webhook",
            requestBody=_body,
        ),
        "get": _op("List the account's webhook subscriptions", "listWebhooks"),
    },
    "/v1/webhooks/{id}": {
        "get": _op("Retrieve a subscription", "getWebhook", ref="Webhook", parameters=_id),
        "patch": _op(
            "Change a subscription", "updateWebhook", ref="Webhook", parameters=_id, requestBody=_body
        ),
        "delete": _op("Delete a subscription", "deleteWebhook", "204", parameters=_id),
    },
    "/v1/webhooks/{id}/secret": {
        "get": _op("Reveal the signing secret", "revealWebhookSecret", parameters=_id)
    },
    "/v1/webhooks/{id}/rotate-secret": {
        "post": _op("New secret; the old one keeps signing for 24 h", "rotateWebhookSecret", parameters=_id)
    },
    "/v1/webhooks/{id}/test": {
        "post": _op("Send a signed webhook.test event", "testWebhook", "202", parameters=_id)
    },
    "/v1/webhooks/{id}/recover": {
        "post": _op(
            "Resend failed deliveries since a time (at most 1000 per call)",
            "recoverWebhook",
            "202",
            parameters=_id,
            requestBody={"required": True, "content": _obj},
        )
    },
    "/v1/webhooks/{id}/deliveries": {
        "get": _op(
            "The subscription's deliveries with their attempts, newest first",
            "listWebhookDeliveries",
            parameters=_id + _page,
        )
    },
    "/v1/tasks/{id}/deliveries": {
        "get": _op("Every delivery of a task's events, with attempts", "listTaskDeliveries", parameters=_id)
    },
    "/v1/deliveries/{id}": {"get": _op("Retrieve a delivery", "getDelivery", ref="Delivery", parameters=_id)},
    "/v1/deliveries/{id}/retry": {
        "post": _op("Resend now with the same webhook-id", "retryDelivery", "202", "Delivery", parameters=_id)
    },
    "/v1/hooks": {
        "post": _op(
            "REST Hook subscribe (Zapier/Make): {target_url, event}",
            "subscribeHook",
            "201",
            requestBody={"required": True, "content": _obj},
        )
    },
    "/v1/hooks/{id}": {
        "delete": _op("REST Hook unsubscribe (idempotent)", "unsubscribeHook", "204", parameters=_id)
    },
    "/v1/events": {
        "get": {
            **_op("Events newest first (a sample when empty), for polling triggers", "listEvents"),
            "parameters": [
                {"name": "type", "in": "query", "schema": {"type": "string", "enum": list(feed.FEED_TYPES)}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": feed.LIMIT_MAX},
                },
            ],
        }
    },
}
