"""Runway's organization resource for the calling account: limits, balance, usage."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import usage
from service.api import context
from service.api.responses import JSON


async def get_organization(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    svc = context.services(request)
    body = await svc.db.read(
        lambda conn: usage.organization(
            conn, account, now=svc.rt.now(), monthly_credits=svc.rt.settings.monthly_credits
        )
    )
    return JSON(body)


async def post_usage(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    svc = context.services(request)
    raw = await context.read_body(request)
    body = None
    if raw.strip():
        body = context.parse_json(raw)
    result = await svc.db.read(lambda conn: usage.usage(conn, account["id"], body, now=svc.rt.now()))
    return JSON(result)


routes = [
    Route("/v1/organization", get_organization, methods=["GET"]),
    Route("/v1/organization/usage", post_usage, methods=["POST"]),
]

_limits = {
    "type": "object",
    "properties": {
        "maxConcurrentGenerations": {"type": ["integer", "null"]},
        "maxDailyGenerations": {"type": ["integer", "null"]},
    },
}
SCHEMAS: dict[str, Any] = {
    "Organization": {
        "type": "object",
        "required": ["creditBalance", "tier", "usage"],
        "properties": {
            "creditBalance": {"type": "integer"},
            "tier": {
                "type": "object",
                "required": ["maxMonthlyCreditSpend", "models"],
                "properties": {
                    "maxMonthlyCreditSpend": {"type": "integer"},
                    "models": {"type": "object", "additionalProperties": _limits},
                },
            },
            "usage": {
                "type": "object",
                "required": ["models"],
                "properties": {
                    "models": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["dailyGenerations"],
                            "properties": {"dailyGenerations": {"type": "integer"}},
                        },
                    }
                },
            },
        },
    },
    "UsageRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "startDate": {"type": "string", "format": "date"},
            "beforeDate": {"type": "string", "format": "date"},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["models", "results"],
        "properties": {
            "models": {"type": "array", "items": {"type": "string"}},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "usedCredits"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "usedCredits": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["amount", "model"],
                                "properties": {"amount": {"type": "integer"}, "model": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}
PATHS: dict[str, Any] = {
    "/v1/organization": {
        "get": {
            "summary": "The calling account's limits, credit balance and daily usage",
            "operationId": "getOrganization",
            "responses": {
                "200": {
                    "description": "Organization",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Organization"}}
                    },
                }
            },
        }
    },
    "/v1/organization/usage": {
        "post": {
            "summary": "Credits used per day and model",
            "operationId": "getOrganizationUsage",
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UsageRequest"}}},
            },
            "responses": {
                "200": {
                    "description": "Usage",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}}},
                }
            },
        }
    },
}
