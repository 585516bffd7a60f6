"""Signed, expiring links to files Callboard serves (outputs, upload targets).

A link carries an itsdangerous token (HMAC-SHA256 over the payload and a timestamp);
the file route checks it with ``max_age``, so a link stops working after its
lifetime while the same file can always be linked again with a fresh token (every
``GET /v1/tasks/{id}`` re-signs). Timestamps come from the injected clock, so tests
move time with a fake clock instead of sleeping.

File links and upload targets use different salts: a token minted for one can never
be replayed as the other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import itsdangerous

#: How long an ``uploadUrl`` accepts its one file.
UPLOAD_URL_TTL_SECONDS = 3600.0


class _ClockSigner(itsdangerous.TimestampSigner):
    """A timestamp signer that reads time from an injected clock (whole seconds)."""

    def __init__(self, *args: Any, now: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return int(self._now())


class Links:
    def __init__(
        self,
        secret_key: str,
        public_url: str,
        *,
        ttl_seconds: float = 86400.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.ttl_seconds = ttl_seconds
        signer_kwargs = {"digest_method": hashlib.sha256, "now": clock or time.time}
        self._serializer = itsdangerous.URLSafeTimedSerializer(
            secret_key, salt="callboard.links", signer=_ClockSigner, signer_kwargs=signer_kwargs
        )
        self._uploads = itsdangerous.URLSafeTimedSerializer(
            secret_key, salt="callboard.uploads", signer=_ClockSigner, signer_kwargs=signer_kwargs
        )

    def sign(self, payload: Any) -> str:
        return self._serializer.dumps(payload)

    def verify(self, token: str, *, max_age: float | None = None) -> Any:
        """The payload, or raise ``itsdangerous.BadSignature`` (``SignatureExpired`` when old)."""
        return self._serializer.loads(token, max_age=int(self.ttl_seconds if max_age is None else max_age))

    def file_url(self, storage_key: str) -> str:
        """A public URL for a stored file, valid for ``ttl_seconds`` from now."""
        name = storage_key.rsplit("/", 1)[-1]
        return f"{self.public_url}/files/{self.sign({'k': storage_key})}/{name}"

    def upload_url(self, asset_id: str) -> str:
        """The signed target a client POSTs one file to, valid for an hour."""
        return f"{self.public_url}/uploads/{self._uploads.dumps({'u': asset_id})}"

    def verify_upload(self, token: str) -> str:
        """The upload's asset id, or raise ``itsdangerous.BadSignature``/``SignatureExpired``."""
        payload = self._uploads.loads(token, max_age=int(UPLOAD_URL_TTL_SECONDS))
        if not isinstance(payload, dict) or not isinstance(payload.get("u"), str):
            raise itsdangerous.BadSignature("malformed upload token")
        return str(payload["u"])
