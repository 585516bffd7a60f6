"""Response helpers shared by every route module."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSON(Response):
    """JSON via orjson (PERFORMANCE.md: ~10x cheaper than the stdlib on these bodies)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def no_content() -> Response:
    return Response(status_code=204)
