"""The models and the Alembic migrations describe the same schema, both ways."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service import models, schema


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, models.metadata))
    finally:
        engine.dispose()


def test_models_match_migrations(database_url: str) -> None:
    assert _diff(database_url) == []


def test_downgrade_to_base_and_upgrade_round_trips(database_url: str) -> None:
    schema.downgrade(database_url, "base")
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        remaining = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert remaining == set()
    schema.upgrade(database_url)
    assert _diff(database_url) == []
    engine = sa.create_engine(database_url)
    assert schema.current_revision(engine) == schema.head_revision(database_url)
    engine.dispose()
