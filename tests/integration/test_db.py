"""The unit-of-work layer: atomic units, group commit isolation, commit listeners."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from service import db as db_mod
from service import models as m
from service.db import Database


def _insert_account(name: str, fail: bool = False) -> Any:
    def unit(conn: Any) -> str:
        conn.execute(m.accounts.insert().values(id=f"acct_{name}", name=name, max_jobs=1, created_at=1.0))
        if fail:
            raise RuntimeError("boom")
        return name

    return unit


def _names(db: Database) -> set[str]:
    return set(db.read_sync(lambda c: c.execute(sa.select(m.accounts.c.name)).scalars().all()))


def test_a_failing_unit_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        db.write_sync(_insert_account("a", fail=True))
    assert _names(db) == set()


def test_concurrent_units_commit_or_fail_alone(db: Database) -> None:
    async def main() -> list[Any]:
        units = [_insert_account(f"n{i}", fail=(i % 3 == 0)) for i in range(30)]
        return await asyncio.gather(*(db.write(u) for u in units), return_exceptions=True)

    results = asyncio.run(main())
    ok = {r for r in results if isinstance(r, str)}
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 10
    assert _names(db) == ok
    assert len(ok) == 20


def test_listeners_run_only_after_commit(db: Database) -> None:
    fired = threading.Event()
    db.listen("tasks", fired.set)

    def failing(conn: Any) -> None:
        db_mod.notify(conn, "tasks")
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        db.write_sync(failing)
    assert not fired.is_set()
    db.write_sync(lambda conn: db_mod.notify(conn, "tasks"))
    assert fired.wait(5)


def test_integrity_error_in_one_unit_does_not_poison_the_batch(db: Database) -> None:
    db.write_sync(_insert_account("dup"))

    async def main() -> list[Any]:
        return await asyncio.gather(
            db.write(_insert_account("dup")), db.write(_insert_account("fresh")), return_exceptions=True
        )

    results = asyncio.run(main())
    assert isinstance(results[0], sa.exc.IntegrityError)
    assert results[1] == "fresh"
    assert _names(db) == {"dup", "fresh"}
