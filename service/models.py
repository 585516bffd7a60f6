"""The schema: one SQLModel table class per noun (PRODUCT.md "Core nouns").

These classes define the tables for Alembic and tests; hot paths use SQLAlchemy Core
statements on ``Model.__table__`` (PERFORMANCE.md: the ORM, not the database, is the
first wall). Every change here goes with an Alembic migration; a test checks that the
two agree.

Conventions: ids are prefixed strings (tasks use bare UUIDs, like Runway); times are
Unix epoch seconds (float, UTC); JSON columns hold only what the API itself shows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata = SQLModel.metadata

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=sa.Column(JSONType, nullable=nullable))


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    max_jobs: int = Field(default=5)
    default_reply_url: str | None = Field(default=None, max_length=2048)
    created_at: float


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None


class Task(SQLModel, table=True):
    """One character-performance job and the worker's bookkeeping for it.

    ``run_at`` is when the worker should next look at the task (dispatch, poll, provider
    cancel); NULL means nothing is scheduled. ``lease_owner``/``lease_expires_at`` mark a
    claim; ``fence`` increases on every claim, and a worker's writes are conditional on
    the fence it claimed with, so a worker that lost its lease cannot overwrite newer
    state.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "idempotency_key"),
        sa.Index("ix_tasks_account_id_created_at", "account_id", "created_at"),
        sa.Index("ix_tasks_run_at", "run_at"),
        sa.Index("ix_tasks_account_id_status", "account_id", "status"),
    )
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    model: str = Field(max_length=64)
    status: str = Field(max_length=16)
    spec: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    provider: str = Field(max_length=32)
    provider_task_id: str | None = Field(default=None, max_length=200)
    estimated_credits: float = 0.0
    cost_credits: int | None = None
    progress: float | None = None
    failure: str | None = Field(default=None, max_length=2000)
    failure_code: str | None = Field(default=None, max_length=200)
    output_keys: list[str] | None = _json()
    upstream_output: list[str] | None = _json()
    output_expired_at: float | None = None
    reply_url: str | None = Field(default=None, max_length=2048)
    reply_ref: str | None = Field(default=None, max_length=1024)
    webhook_events: list[str] | None = _json()
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deleted_at: float | None = None
    run_at: float | None = None
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: float | None = None
    fence: int = 0
    attempts: int = 0
    cancel_pending: bool = False
    sequence: int = 0
    last_progress_event_at: float | None = None


class Event(SQLModel, table=True):
    """An immutable fact, written in the same transaction as the change that caused it.

    ``body`` is the exact JSON document sent to receivers: serialised once, so every
    retry and replay sends identical bytes.
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_account_id_created_at", "account_id", "created_at"),
        sa.Index("ix_events_task_id_sequence", "task_id", "sequence"),
    )
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    task_id: str | None = Field(default=None, max_length=40)
    type: str = Field(max_length=64)
    sequence: int = 0
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: float


class Endpoint(SQLModel, table=True):
    """A webhook destination: a subscription, a REST hook, or one task's replyUrl.

    ``kind`` is ``subscription``, ``hook`` or ``reply`` (then ``task_id`` is set).
    ``event_types`` NULL means every event type.
    """

    __tablename__ = "endpoints"
    __table_args__ = (sa.Index("ix_endpoints_account_id_kind", "account_id", "kind"),)
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    kind: str = Field(max_length=16)
    task_id: str | None = Field(default=None, max_length=40, index=True)
    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=1000)
    event_types: list[str] | None = _json()
    secret: str = Field(max_length=200)
    previous_secret: str | None = Field(default=None, max_length=200)
    previous_secret_expires_at: float | None = None
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    disabled_at: float | None = None
    rate_limit: int | None = None  # deliveries per second, NULL = unlimited
    rate_tat: float | None = None  # rate limiter state (GCRA theoretical arrival time)
    max_concurrency: int = 10
    in_flight: int = 0
    last_success_at: float | None = None
    failing_since: float | None = None
    created_at: float
    updated_at: float
    deleted_at: float | None = None


class Delivery(SQLModel, table=True):
    """One (event, endpoint) pair. Its id is the ``webhook-id`` header, stable across
    retries and replays. ``status`` is ``pending``, ``succeeded`` or ``failed`` (gave up)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
        sa.Index("ix_deliveries_task_id", "task_id"),
        sa.Index("ix_deliveries_lease_expires_at_endpoint_id", "lease_expires_at", "endpoint_id"),
    )
    id: str = Field(primary_key=True, max_length=40)
    event_id: str = Field(foreign_key="events.id", max_length=40)
    endpoint_id: str = Field(foreign_key="endpoints.id", max_length=40)
    account_id: str = Field(max_length=40)
    task_id: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: float | None = None
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: float | None = None
    fence: int = 0
    manual: bool = False
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: float
    updated_at: float
    succeeded_at: float | None = None


class Attempt(SQLModel, table=True):
    """One HTTP attempt of a delivery, kept for the delivery log."""

    __tablename__ = "attempts"
    id: str = Field(primary_key=True, max_length=40)
    delivery_id: str = Field(foreign_key="deliveries.id", index=True, max_length=40)
    number: int
    trigger: str = Field(max_length=16)  # scheduled | manual
    started_at: float
    status_code: int | None = None
    latency_ms: float | None = None
    error_class: str | None = Field(default=None, max_length=64)
    response_body: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    next_attempt_at: float | None = None


class Asset(SQLModel, table=True):
    """A file Callboard holds: an upload, a fetched input, a render or a re-hosted output.

    ``kind`` is ``upload``, ``input`` or ``output``; ``storage_key`` names the bytes in
    the storage backend; ``expires_at`` drives retention.
    """

    __tablename__ = "assets"
    __table_args__ = (sa.Index("ix_assets_account_id_created_at", "account_id", "created_at"),)
    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    kind: str = Field(max_length=16)
    task_id: str | None = Field(default=None, max_length=40, index=True)
    filename: str | None = Field(default=None, max_length=255)
    content_type: str | None = Field(default=None, max_length=100)
    size: int | None = None
    sha256: str | None = Field(default=None, max_length=64)
    storage_key: str | None = Field(default=None, max_length=500)
    media: dict[str, Any] | None = _json()
    created_at: float
    expires_at: float | None = Field(default=None, index=True)
    deleted_at: float | None = None


accounts = Account.__table__
api_keys = ApiKey.__table__
tasks = Task.__table__
events = Event.__table__
endpoints = Endpoint.__table__
deliveries = Delivery.__table__
attempts = Attempt.__table__
assets = Asset.__table__
