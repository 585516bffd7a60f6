"""Typed errors. Domain code raises these; one handler in ``service.api.app`` turns them
into ``{"error": message, "code": code[, "field": field]}`` responses.

Status codes are chosen with the official SDK's retry rules in mind: it retries 408,
409, 429 and every 5xx (POST included), so nothing that must not be repeated is
answered with those.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class ValidationError(ServiceError):
    """The request is malformed; ``field`` names the offending field (dotted path)."""

    status = 400
    code = "validation_error"


class AuthenticationError(ServiceError):
    status = 401
    code = "unauthenticated"


class NotFound(ServiceError):
    """Unknown id, or an id that belongs to another account (tenants never learn which)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class IdempotencyMismatch(ServiceError):
    """The Idempotency-Key was used before with a different request body."""

    status = 422
    code = "idempotency_key_reused"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


class Unavailable(ServiceError):
    """A dependency (the database) is unreachable; retrying later is right."""

    status = 503
    code = "unavailable"
