"""The ASGI application: routes, the one error handler, and process resources.

Resources (database, runtime, the embedded worker) are created in the lifespan of
``create_app(settings)``, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from service import clock as clock_mod
from service import errors, runtime
from service.api import context, health, openapi, organization
from service.api import stream as stream_api
from service.api import tasks as tasks_api
from service.api import uploads as uploads_api
from service.api import useapi as useapi_api
from service.api import webhooks as webhooks_api
from service.api.responses import JSON
from service.db import Database
from service.settings import Settings
from service.web import routes as web_routes

log = logging.getLogger(__name__)

# Route modules, each with ``routes`` and its OpenAPI ``PATHS``/``SCHEMAS``.
ROUTE_MODULES = [
    health,
    tasks_api,
    organization,
    webhooks_api,
    uploads_api,
    useapi_api,
    stream_api,
    web_routes,
]


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ServiceError)
    return JSON(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        body = {"error": f"No route for {request.method} {request.url.path}", "code": "not_found"}
    elif exc.status_code == 405:
        body = {
            "error": f"Method {request.method} is not allowed on {request.url.path}",
            "code": "method_not_allowed",
        }
    else:
        body = {"error": str(exc.detail), "code": "http_error"}
    return JSON(body, status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is unreachable (restarting, failing over): 503 with Retry-After, so
    clients and load balancers retry later, instead of a 500 that reads like a bug."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSON(
        {"error": "The database is unavailable; retry shortly", "code": "unavailable"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client disconnected mid-body (on any route that streams a body): there is
    nobody to answer and nothing went wrong on our side, so no error is logged."""
    log.debug("client disconnected during %s %s", request.method, request.url.path)
    return JSON(
        {"error": "The client disconnected before sending the whole body", "code": "client_disconnected"},
        status_code=400,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSON({"error": "Internal server error", "code": "internal_error"}, status_code=500)


def create_app(
    settings: Settings,
    *,
    clock: clock_mod.Clock | None = None,
    database: Database | None = None,
    embedded_worker: bool | None = None,
) -> Starlette:
    """Build the app. ``embedded_worker`` (default: the setting) runs the worker loop
    inside this process, as ``callboard serve`` does."""
    run_worker = settings.embedded_worker if embedded_worker is None else embedded_worker
    modules = list(ROUTE_MODULES)
    document = openapi.build(modules)

    async def openapi_json(request: Request) -> Response:
        return JSON(document)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = database or Database(settings.database_url)
        rt = runtime.build(settings, clock)
        services = context.Services(db=db, rt=rt)
        app.state.services = services
        worker_task: asyncio.Task[Any] | None = None
        worker = None
        if run_worker:
            from service import worker as worker_mod

            worker = worker_mod.Worker.build(db, rt)
            worker_task = asyncio.create_task(worker.run(), name="callboard-embedded-worker")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                worker.request_stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if database is None:
                db.close()

    routes = [route for module in modules for route in module.routes]
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    application = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            errors.ServiceError: _service_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            sa.exc.OperationalError: _database_unavailable,
            sa.exc.InterfaceError: _database_unavailable,
            Exception: _unexpected,
        },
    )
    application.router.redirect_slashes = False
    return application
