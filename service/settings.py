"""Settings: read once from ``CALLBOARD_*`` environment variables into a frozen object.

Nothing else in the package reads ``os.environ``; the object is built by :func:`load`
at process start (CLI) or by tests, and passed down explicitly. Every key below is
documented, with its default, in the README's settings table.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

PREFIX = "CALLBOARD_"
PROVIDERS = ("local", "runway", "cometapi")
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    host: str
    port: int
    secret_key: str
    log_level: str
    public_base_url: str | None  # CALLBOARD_PUBLIC_URL; None: derived from host and port
    provider: str
    # HTTP intake
    max_body_bytes: int
    max_header_bytes: int  # a request head (request line + headers) larger than this gets 431
    header_timeout: float  # a request head not complete this long after its first byte gets 408
    rate_limit: float  # API requests per second per key (0: unlimited)
    auth_cache_seconds: float  # how long a web process trusts a key lookup (revocation delay)
    rate_burst: int
    # worker
    worker_poll_interval: float
    worker_lease_seconds: float
    worker_batch_size: int
    embedded_worker: bool
    worker_grace_seconds: float  # SIGTERM: time to finish or release in-flight work
    # task running (service.runner)
    provider_poll_interval: float  # CALLBOARD_RUNWAY_POLL_INTERVAL, at least 5 s
    provider_timeout: float  # read timeout of one provider HTTP call
    provider_max_concurrency: int  # 0: ask the provider (GET /v1/organization), else unlimited
    provider_max_retries: int  # transient failures of one submit/cancel before giving up
    task_timeout: float  # a task running longer than this fails as INTERNAL
    local_concurrency: int  # renders at once per worker process (local provider)
    local_prewarm: bool  # keep a spare render process with the engine loaded per free slot
    rehost_outputs: bool  # copy upstream outputs into Callboard's storage
    cometapi_not_found_grace: float  # CometAPI may deny a fresh task exists for this long
    # upstream providers
    runway_api_key: str | None
    runway_base_url: str
    cometapi_api_key: str | None
    cometapi_base_url: str
    # outbound safety
    allow_private_targets: tuple[str, ...]
    # media: uploads, fetched inputs, stored outputs, retention
    link_ttl_seconds: float  # lifetime of signed output links
    retention_hours: float  # stored inputs/outputs are deleted this long after storing; 0 keeps them
    upload_max_bytes: int  # largest file the upload target accepts
    fetch_timeout: float  # whole-download limit for input URLs and re-hosted outputs
    # accounts
    monthly_credits: int
    # webhook delivery (service.webhooks)
    webhook_schedule: tuple[float, ...]  # delay before each attempt; its length is the attempt budget
    webhook_jitter: float  # +- fraction applied to every non-zero delay
    webhook_connect_timeout: float
    webhook_timeout: float  # whole request, response excerpt included
    webhook_throttle_floor: float  # least wait after 429/502/503/504 and timeouts
    webhook_max_retry_after: float  # Retry-After values are clamped to this
    webhook_disable_after: float  # an endpoint failing this long without a success is disabled
    webhook_max_in_flight: int  # requests at once per worker process
    # web pages (service.web) and the task stream (service.api.stream)
    examples_dir: Path | None  # CALLBOARD_EXAMPLES_DIR: files the playground offers as examples
    session_ttl_seconds: float  # a dashboard sign-in lasts this long
    stream_poll_interval: float  # GET /v1/tasks/{id}/stream re-reads the task this often
    stream_keepalive_seconds: float  # idle streams get a comment this often

    @property
    def public_url(self) -> str:
        """The base URL clients reach this service at (used in output and upload links)."""
        if self.public_base_url:
            return self.public_base_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def replace(self, **changes: object) -> Settings:
        """A copy with some values changed (tests and the CLI use this)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(PREFIX + name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingsError(f"{PREFIX}{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (_get(env, name) or default).lower()
    if raw not in choices:
        raise SettingsError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _schedule(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be comma-separated seconds, got {raw!r}") from None
    if not values or any(v < 0 or v != v or v == float("inf") for v in values):
        raise SettingsError(f"{PREFIX}{name} must be comma-separated non-negative seconds, got {raw!r}")
    return values


def _directory(env: Mapping[str, str], name: str) -> Path | None:
    """An existing directory, or None when unset."""
    raw = _get(env, name)
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise SettingsError(f"{PREFIX}{name} must name an existing directory, got {raw!r}")
    return path


def _secret_key(env: Mapping[str, str], data_dir: Path) -> str:
    """The configured key, else one generated once and kept in the data directory.

    Persisting it keeps signed output URLs valid across restarts of a single-machine
    install; scaled-out deployments must set the same key on every process.
    """
    configured = _get(env, "SECRET_KEY")
    if configured is not None:
        if len(configured) < 16:
            raise SettingsError(f"{PREFIX}SECRET_KEY must be at least 16 characters")
        return configured
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # fails if another process won the race: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment).

    Creates the data directory if needed. Raises :class:`SettingsError` naming the
    variable for any value that cannot be used.
    """
    env = os.environ if env is None else env
    data_dir = Path(_get(env, "DATA_DIR", "./callboard-data") or "").expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    host = _get(env, "HOST", "127.0.0.1") or "127.0.0.1"
    port = _int(env, "PORT", 8080, minimum=0, maximum=65535)
    database_url = _get(env, "DATABASE_URL") or f"sqlite:///{data_dir / 'callboard.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    if not (database_url.startswith("sqlite:///") or database_url.startswith("postgresql+psycopg://")):
        raise SettingsError(f"{PREFIX}DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    public_url = _get(env, "PUBLIC_URL")
    allow = _get(env, "ALLOW_PRIVATE_TARGETS", "") or ""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        secret_key=_secret_key(env, data_dir),
        log_level=_choice(env, "LOG_LEVEL", "info", LOG_LEVELS),
        public_base_url=public_url.rstrip("/") if public_url else None,
        provider=_choice(env, "PROVIDER", "local", PROVIDERS),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 48 * 1024 * 1024, minimum=1024),
        max_header_bytes=_int(env, "MAX_HEADER_BYTES", 64 * 1024, minimum=1024, maximum=16 * 1024 * 1024),
        header_timeout=_float(env, "HEADER_TIMEOUT", 10.0, minimum=0.1),
        rate_limit=_float(env, "RATE_LIMIT", 50.0, minimum=0.0),
        auth_cache_seconds=_float(env, "AUTH_CACHE_SECONDS", 5.0, minimum=0.0),
        rate_burst=_int(env, "RATE_BURST", 100, minimum=1),
        worker_poll_interval=_float(env, "WORKER_POLL_INTERVAL", 0.5, minimum=0.01),
        worker_lease_seconds=_float(env, "WORKER_LEASE_SECONDS", 60.0, minimum=1.0),
        worker_batch_size=_int(env, "WORKER_BATCH_SIZE", 50, minimum=1, maximum=1000),
        embedded_worker=_bool(env, "EMBEDDED_WORKER", True),
        worker_grace_seconds=_float(env, "WORKER_GRACE_SECONDS", 30.0, minimum=0.0),
        provider_poll_interval=_float(env, "RUNWAY_POLL_INTERVAL", 5.0, minimum=5.0),
        provider_timeout=_float(env, "PROVIDER_TIMEOUT", 30.0, minimum=1.0),
        provider_max_concurrency=_int(env, "PROVIDER_MAX_CONCURRENCY", 0, minimum=0, maximum=100_000),
        provider_max_retries=_int(env, "PROVIDER_MAX_RETRIES", 8, minimum=0, maximum=100),
        task_timeout=_float(env, "TASK_TIMEOUT", 3600.0, minimum=10.0),
        local_concurrency=_int(env, "LOCAL_CONCURRENCY", 1, minimum=1, maximum=64),
        local_prewarm=_bool(env, "LOCAL_PREWARM", True),
        rehost_outputs=_bool(env, "REHOST_OUTPUTS", True),
        cometapi_not_found_grace=_float(env, "COMETAPI_NOT_FOUND_GRACE", 60.0, minimum=0.0),
        runway_api_key=_get(env, "RUNWAY_API_KEY"),
        runway_base_url=(_get(env, "RUNWAY_BASE_URL", "https://api.dev.runwayml.com") or "").rstrip("/"),
        cometapi_api_key=_get(env, "COMETAPI_API_KEY"),
        cometapi_base_url=(_get(env, "COMETAPI_BASE_URL", "https://api.cometapi.com") or "").rstrip("/"),
        allow_private_targets=tuple(part.strip() for part in allow.split(",") if part.strip()),
        link_ttl_seconds=_float(env, "LINK_TTL_SECONDS", 86400.0, minimum=1.0),
        retention_hours=_float(env, "RETENTION_HOURS", 168.0, minimum=0.0),
        upload_max_bytes=_int(env, "UPLOAD_MAX_BYTES", 200 * 1024 * 1024, minimum=512),
        fetch_timeout=_float(env, "FETCH_TIMEOUT", 120.0, minimum=1.0),
        monthly_credits=_int(env, "MONTHLY_CREDITS", 1_000_000, minimum=0),
        webhook_schedule=_schedule(
            env, "WEBHOOK_SCHEDULE", (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
        ),
        webhook_jitter=min(0.5, _float(env, "WEBHOOK_JITTER", 0.2, minimum=0.0)),
        webhook_connect_timeout=_float(env, "WEBHOOK_CONNECT_TIMEOUT", 5.0, minimum=0.1),
        webhook_timeout=_float(env, "WEBHOOK_TIMEOUT", 15.0, minimum=0.1),
        webhook_throttle_floor=_float(env, "WEBHOOK_THROTTLE_FLOOR", 60.0, minimum=0.0),
        webhook_max_retry_after=_float(env, "WEBHOOK_MAX_RETRY_AFTER", 86400.0, minimum=0.0),
        webhook_disable_after=_float(env, "WEBHOOK_DISABLE_AFTER", 5 * 86400.0, minimum=1.0),
        webhook_max_in_flight=_int(env, "WEBHOOK_MAX_IN_FLIGHT", 256, minimum=1, maximum=10_000),
        examples_dir=_directory(env, "EXAMPLES_DIR"),
        session_ttl_seconds=_float(env, "SESSION_TTL_SECONDS", 43200.0, minimum=60.0),
        stream_poll_interval=_float(env, "STREAM_POLL_INTERVAL", 1.0, minimum=0.05),
        stream_keepalive_seconds=_float(env, "STREAM_KEEPALIVE_SECONDS", 15.0, minimum=1.0),
    )
