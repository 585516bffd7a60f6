"""Fixtures: every database-backed test runs on SQLite and, when
CALLBOARD_TEST_POSTGRES_URL is set (CI always sets it), on PostgreSQL too.

The schema is built by running the Alembic migrations (never ``create_all``): once per
session into a template (SQLite: a file copied per test; PostgreSQL: tables truncated
per test).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import accounts, runtime, schema
from service import models as m
from service import settings as settings_mod
from service.db import Database
from tests.support import FakeClock

PG_URL = os.environ.get("CALLBOARD_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
if os.environ.get("CALLBOARD_REQUIRE_POSTGRES") == "1" and not PG_URL:
    raise RuntimeError("CALLBOARD_REQUIRE_POSTGRES=1 but CALLBOARD_TEST_POSTGRES_URL is not set")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    schema.upgrade(f"sqlite:///{path}")
    return path


def pg_database_url() -> str:
    """The test PostgreSQL's URL as Callboard's settings normalise it (driver prefix)."""
    assert PG_URL
    return settings_mod.load(
        {
            "CALLBOARD_DATABASE_URL": PG_URL,
            "CALLBOARD_DATA_DIR": "/tmp/callboard-test-pg",
            "CALLBOARD_SECRET_KEY": "x" * 32,
        }
    ).database_url


@pytest.fixture(scope="session")
def pg_migrated() -> str | None:
    if not PG_URL:
        return None
    url = pg_database_url()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    schema.upgrade(url)
    return url


def _truncate(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(t.name for t in m.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "callboard.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_migrated")
    _truncate(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> settings_mod.Settings:
    env = {
        "CALLBOARD_DATA_DIR": str(tmp_path / "data"),
        "CALLBOARD_DATABASE_URL": database_url,
        "CALLBOARD_SECRET_KEY": "test-secret-key-0123456789",
        "CALLBOARD_PUBLIC_URL": "http://testserver",
        "CALLBOARD_ALLOW_PRIVATE_TARGETS": "127.0.0.1,::1,localhost",
        "CALLBOARD_WORKER_POLL_INTERVAL": "0.05",
        "CALLBOARD_AUTH_CACHE_SECONDS": "0",
    }
    return settings_mod.load(env)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(settings: settings_mod.Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.close()


@pytest.fixture
def rt(settings: settings_mod.Settings, clock: FakeClock) -> runtime.Runtime:
    return runtime.build(settings, clock)


class AccountFactory:
    """Creates accounts with a live key: ``make(name) -> (account_row, key)``."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.n = 0

    def __call__(
        self, name: str | None = None, *, max_jobs: int = 5, **extra: Any
    ) -> tuple[dict[str, Any], str]:
        self.n += 1
        name = name or f"account-{self.n}"

        def unit(conn: Any) -> tuple[dict[str, Any], str]:
            account = accounts.create_account(conn, name, self.clock.now(), max_jobs=max_jobs, **extra)
            secret, _ = accounts.create_key(conn, account["id"], self.clock.now())
            return account, secret

        return self.db.write_sync(unit)


@pytest.fixture
def make_account(db: Database, clock: FakeClock) -> AccountFactory:
    return AccountFactory(db, clock)


@pytest.fixture
def app(settings: settings_mod.Settings, db: Database, clock: FakeClock) -> Any:
    from service.api.app import create_app

    return create_app(settings, clock=clock, database=db, embedded_worker=False)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
