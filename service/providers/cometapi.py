"""CometAPI: Runway's wire format at another base URL, with its known quirks absorbed.

* Paths live under ``/runwayml/v1/...`` and the model is ``runwayml-character-performance``.
* Some answers wrap the payload in ``{"code", "message", "data": {...}}``.
* Right after create, a task can briefly be reported as not existing (HTTP 404, or a
  wrapped "task does not exist"): within ``not_found_grace`` seconds of submission that
  means "still PENDING", not a failure.
"""

from __future__ import annotations

import re
from typing import Any

from service.providers import base, runway

_NOT_EXIST = re.compile(r"(task|record).{0,20}(does not exist|not exist|not found)", re.I)


def is_envelope(body: Any) -> bool:
    return isinstance(body, dict) and "data" in body and ("code" in body or "message" in body)


def unwrap(body: Any) -> Any:
    """The task inside ``{"code","message","data"}``; a wrapped "does not exist" raises
    UnknownTask and a wrapped error raises Transient (the envelope may come with 200)."""
    if not is_envelope(body):
        return body
    data = body.get("data")
    if isinstance(data, dict) and data:
        return data
    message = str(body.get("message") or body.get("code") or "empty answer")
    if _NOT_EXIST.search(message):
        raise base.UnknownTask(f"The provider does not know this task: {message}")
    raise base.Transient(f"The provider answered without a task: {message}")


class CometProvider(runway.RunwayProvider):
    name = "cometapi"
    api_prefix = "/runwayml/v1"
    model = "runwayml-character-performance"

    def __init__(self, http: Any, *, not_found_grace: float = 60.0, **kwargs: Any) -> None:
        super().__init__(http, **kwargs)
        self.not_found_grace = not_found_grace

    def unwrap(self, body: Any) -> Any:
        return unwrap(body)

    def classify(
        self, status_code: int, body: Any, retry_after: float | None, *, creating: bool
    ) -> base.ProviderError:
        message = runway.error_message(body, status_code)
        if status_code in (400, 404) and _NOT_EXIST.search(message):
            return base.UnknownTask(f"The provider does not know this task: {message}")
        inner = body.get("data") if is_envelope(body) and isinstance(body.get("data"), dict) else body
        return runway.classify(status_code, inner if inner else body, retry_after, creating=creating)

    async def poll(self, provider_task_id: str, *, age: float = 0.0) -> base.Status:
        try:
            return await super().poll(provider_task_id, age=age)
        except base.UnknownTask:
            if age < self.not_found_grace:
                return base.Status(status="PENDING")
            raise
