"""Liveness and readiness probes."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__
from service.api import context
from service.api.responses import JSON


async def healthz(request: Request) -> Response:
    """The process is up (no dependencies checked)."""
    return JSON({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    """The database answers; 503 otherwise (load balancers stop routing here)."""
    svc = context.services(request)
    try:
        await svc.db.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one())
    except Exception as exc:
        return JSON(
            {"status": "unavailable", "error": f"database unreachable: {type(exc).__name__}"}, status_code=503
        )
    return JSON({"status": "ready"})


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]

_status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
PATHS = {
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "operationId": "healthz",
            "security": [],
            "responses": {
                "200": {"description": "Alive", "content": {"application/json": {"schema": _status}}}
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness (database reachable)",
            "operationId": "readyz",
            "security": [],
            "responses": {
                "200": {"description": "Ready", "content": {"application/json": {"schema": _status}}},
                "503": {"description": "Not ready", "content": {"application/json": {"schema": _status}}},
            },
        }
    },
}
SCHEMAS: dict[str, object] = {}
