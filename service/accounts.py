"""Accounts and API keys.

A key is ``cb_`` + 43 random URL-safe characters, shown once when created and stored
only as its SHA-256 (a high-entropy random secret needs no slow hash; the digest lets
a request be authenticated with one indexed lookup).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import errors, ids
from service import models as m

KEY_PREFIX = "cb_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_account(
    conn: Connection, name: str, now: float, *, max_jobs: int = 5, default_reply_url: str | None = None
) -> dict[str, Any]:
    if not name or len(name) > 200:
        raise errors.ValidationError("account name must be 1 to 200 characters", field="name")
    if not 1 <= max_jobs <= 1000:
        raise errors.ValidationError("maxJobs must be between 1 and 1000", field="maxJobs")
    existing = conn.execute(sa.select(m.accounts).where(m.accounts.c.name == name)).mappings().first()
    if existing is not None:
        return dict(existing)
    row = {
        "id": ids.prefixed("acct"),
        "name": name,
        "max_jobs": max_jobs,
        "default_reply_url": default_reply_url,
        "created_at": now,
    }
    conn.execute(m.accounts.insert().values(**row))
    return row


def get_account_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(m.accounts).where(m.accounts.c.name == name)).mappings().first()
    return dict(row) if row else None


def update_account(conn: Connection, account_id: str, **values: Any) -> None:
    conn.execute(m.accounts.update().where(m.accounts.c.id == account_id).values(**values))


def create_key(
    conn: Connection, account_id: str, now: float, *, name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A new key for the account: ``(secret, row)``. The secret is not stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = {
        "id": ids.prefixed("key"),
        "account_id": account_id,
        "name": name,
        "prefix": secret[:10],
        "key_hash": hash_key(secret),
        "created_at": now,
    }
    conn.execute(m.api_keys.insert().values(**row))
    return secret, row


def authenticate(conn: Connection, secret: str) -> dict[str, Any] | None:
    """The account a live key belongs to, or None for unknown and revoked keys."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    row = (
        conn.execute(
            sa.select(m.accounts)
            .join(m.api_keys, m.api_keys.c.account_id == m.accounts.c.id)
            .where(m.api_keys.c.key_hash == hash_key(secret), m.api_keys.c.revoked_at.is_(None))
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_keys(conn: Connection, account_id: str | None = None) -> list[dict[str, Any]]:
    query = (
        sa.select(m.api_keys, m.accounts.c.name.label("account_name"))
        .join(m.accounts, m.accounts.c.id == m.api_keys.c.account_id)
        .order_by(m.api_keys.c.created_at)
    )
    if account_id is not None:
        query = query.where(m.api_keys.c.account_id == account_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def revoke_key(conn: Connection, key_id_or_prefix: str, now: float) -> bool:
    """Revoke by key id (``key_...``) or by the displayed prefix; False if none matched."""
    table = m.api_keys
    result = conn.execute(
        table.update()
        .where(
            sa.or_(table.c.id == key_id_or_prefix, table.c.prefix == key_id_or_prefix),
            table.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return result.rowcount > 0


def list_accounts(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(m.accounts).order_by(m.accounts.c.name)).mappings()]


def count_accounts(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(m.accounts)).scalar_one())
