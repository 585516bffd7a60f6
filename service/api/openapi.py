"""The OpenAPI 3.1 document, assembled from the route modules' own PATHS and SCHEMAS.

Every operation gets the error responses the one error handler can produce, so a
schema-driven fuzzer can check every answer against the document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from service import __version__

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "Human-readable message"},
        "code": {"type": "string", "description": "Stable machine-readable code"},
        "field": {"type": "string", "description": "The offending field, for validation errors"},
    },
}
_ERRORS = {
    "400": "Invalid request (the message names the field)",
    "401": "Missing, unknown or revoked API key",
    "404": "Not found (or not yours)",
    "405": "Method not allowed",
    "413": "Request body too large",
    "415": "Unsupported content type",
    "422": "Idempotency-Key reused with a different body",
    "429": "Rate limited; see Retry-After",
}


def build(modules: Iterable[ModuleType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for module in modules:
        for path, ops in getattr(module, "PATHS", {}).items():
            paths.setdefault(path, {}).update(copy.deepcopy(ops))
        schemas.update(copy.deepcopy(getattr(module, "SCHEMAS", {})))
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for ops in paths.values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            public = op.get("security") == []
            for code, text in _ERRORS.items():
                if public and code == "401":
                    continue
                responses.setdefault(code, {"description": text, "content": error_ref})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Callboard",
            "version": __version__,
            "description": "Runway-compatible character-performance gateway with signed webhooks.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
