"""Identifiers. Tasks use bare UUIDs like Runway; other nouns use a readable prefix."""

from __future__ import annotations

import secrets
import uuid


def task_id() -> str:
    return str(uuid.uuid4())


def prefixed(prefix: str) -> str:
    """``prefix_`` + 26 random base32 characters (130 bits), e.g. ``msg_k3...``."""
    return f"{prefix}_{secrets.token_hex(13)}"
