"""Standard Webhooks v1 signing (https://www.standardwebhooks.com).

A delivery carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``;
the signature is ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where
``key`` is the base64-decoded part of the ``whsec_`` secret and ``body`` is the exact
bytes sent. During a secret rotation several signatures are sent, space-separated, and
a receiver accepts the message if any of them verifies.

Pinned by a known-answer vector in ``tests/unit/test_webhook_signing.py`` and checked
against the ``standardwebhooks`` package on every delivery in the integration tests.
Secrets are never logged: nothing here formats one into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from service import __version__

PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = f"Callboard-Webhooks/{__version__}"


class InvalidSecret(ValueError):
    """The string is not a ``whsec_`` + base64 secret of 24 to 64 bytes."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret (the prefix is optional, as in the spec)."""
    text = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("webhook secret is not base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidSecret("webhook secret must hold 24 to 64 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature over ``{id}.{timestamp}.{body}``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated."""
    return " ".join(signature(key, msg_id, timestamp, body) for key in keys)


def headers(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header a delivery carries besides what the HTTP client adds itself."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(keys, msg_id, int(timestamp), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
