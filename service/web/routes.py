"""Every dashboard route, for ``ROUTE_MODULES`` in ``service.api.app``.

Pages live under ``/ui`` (``/`` redirects there) so they can never shadow an API or
compatibility route; static assets are served by Callboard itself from the package
(no CDN). HTML pages are not API operations, so they are not in the OpenAPI document
(only the ``/`` redirect is); the JSON/SSE routes they use are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.web import auth, hookpages, playground, taskpages

STATIC_DIR = Path(__file__).parent / "static"


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/tasks", status_code=303)


pages = [
    Route("/", home, methods=["GET"]),
    Route("/signin", auth.signin_form, methods=["GET"]),
    Route("/signin", auth.signin, methods=["POST"]),
    Route("/signout", auth.signout, methods=["POST"]),
    Route("/tasks", taskpages.list_page, methods=["GET"]),
    Route("/tasks/{id}", taskpages.task_page, methods=["GET"]),
    Route("/tasks/{id}/cancel", taskpages.cancel, methods=["POST"]),
    Route("/tasks/{id}/inputs/{role}", taskpages.input_file, methods=["GET"]),
    Route("/tasks/{id}/thumbnail.jpg", taskpages.thumbnail, methods=["GET"]),
    Route("/playground", playground.form_page, methods=["GET"]),
    Route("/playground", playground.submit, methods=["POST"]),
    Route("/playground/examples/{name}", playground.example_file, methods=["GET"]),
    Route("/webhooks", hookpages.list_page, methods=["GET"]),
    Route("/webhooks", hookpages.create, methods=["POST"]),
    Route("/webhooks/{id}", hookpages.endpoint_page, methods=["GET"]),
    Route("/webhooks/{id}/{action}", hookpages.action, methods=["POST"]),
    Route("/deliveries/{id}", hookpages.delivery_page, methods=["GET"]),
    Route("/deliveries/{id}/retry", hookpages.retry, methods=["POST"]),
    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="web-static"),
]

# The pages are one mount (HTML, not API operations); ``/`` sends a person to them.
routes = [Route("/", home, methods=["GET"]), Mount("/ui", routes=pages)]

PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "summary": "Redirect to the dashboard (/ui/tasks)",
            "operationId": "dashboardHome",
            "security": [],
            "responses": {"303": {"description": "See /ui/tasks"}},
        }
    }
}
SCHEMAS: dict[str, Any] = {}
