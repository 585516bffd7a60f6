"""Signed, expiring links to files Callboard serves (outputs, upload targets).

A link carries an itsdangerous token (HMAC-SHA256 over the payload and a timestamp);
the file route checks it with ``max_age``, so a link stops working after its
lifetime while the same file can always be linked again with a fresh token (every
``GET /v1/tasks/{id}`` re-signs).
"""

from __future__ import annotations

import hashlib
from typing import Any

import itsdangerous


class Links:
    def __init__(self, secret_key: str, public_url: str, *, ttl_seconds: float = 86400.0) -> None:
        self.public_url = public_url.rstrip("/")
        self.ttl_seconds = ttl_seconds
        self._serializer = itsdangerous.URLSafeTimedSerializer(
            secret_key, salt="callboard.links", signer_kwargs={"digest_method": hashlib.sha256}
        )

    def sign(self, payload: Any) -> str:
        return self._serializer.dumps(payload)

    def verify(self, token: str, *, max_age: float | None = None) -> Any:
        """The payload, or raise ``itsdangerous.BadSignature`` (``SignatureExpired`` when old)."""
        return self._serializer.loads(token, max_age=self.ttl_seconds if max_age is None else max_age)

    def file_url(self, storage_key: str) -> str:
        """A public URL for a stored file, valid for ``ttl_seconds`` from now."""
        name = storage_key.rsplit("/", 1)[-1]
        return f"{self.public_url}/files/{self.sign({'k': storage_key})}/{name}"
