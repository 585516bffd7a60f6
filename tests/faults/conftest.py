"""Fixtures for the fault-injection runs: a fresh database per test on each backend.

PostgreSQL runs get their own database in the test cluster (created and dropped here),
so the kills and restarts never touch the database the rest of the suite uses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import BACKENDS, PG_URL, pg_database_url

FULL = os.environ.get("CALLBOARD_PROOF") == "full"


def scale(fast: int, full: int) -> int:
    """``fast`` in the everyday suite, ``full`` under ``CALLBOARD_PROOF=full``."""
    return full if FULL else fast


def _admin_engine() -> sa.Engine:
    return sa.create_engine(pg_database_url(), isolation_level="AUTOCOMMIT")


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the processes use the data directory's file), else a new
    PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    name = f"callboard_proof_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()
