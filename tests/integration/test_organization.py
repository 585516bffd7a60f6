"""Runway's organization resource, answered for the calling account."""

from __future__ import annotations

from typing import Any

import pytest

from service import models as m
from service.db import Database
from tests.conftest import AccountFactory
from tests.support import FakeClock

DAY = 86400.0


def _task(
    db: Database, account_id: str, *, created: float, finished: float | None, status: str, cost: int | None
) -> None:
    import uuid

    db.write_sync(
        lambda c: c.execute(
            m.tasks.insert().values(
                id=str(uuid.uuid4()),
                account_id=account_id,
                model="act_two",
                status=status,
                spec={},
                provider="local",
                created_at=created,
                updated_at=created,
                finished_at=finished,
                cost_credits=cost,
            )
        )
    )


@pytest.fixture
def alice(make_account: AccountFactory) -> tuple[dict[str, Any], str]:
    return make_account("alice", max_jobs=7)


def test_organization_reports_limits_balance_and_daily_generations(
    client: Any, alice: tuple[dict[str, Any], str], db: Database, clock: FakeClock, settings: Any
) -> None:
    account, key = alice
    now = clock.now()
    _task(db, account["id"], created=now - 100, finished=now - 50, status="SUCCEEDED", cost=40)
    _task(db, account["id"], created=now - 2 * DAY, finished=now - 2 * DAY, status="SUCCEEDED", cost=25)
    _task(db, account["id"], created=now - 40 * DAY, finished=now - 40 * DAY, status="SUCCEEDED", cost=1000)
    _task(db, account["id"], created=now - 10, finished=now - 5, status="FAILED", cost=0)
    body = client.get("/v1/organization", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["tier"]["models"]["act_two"] == {"maxConcurrentGenerations": 7, "maxDailyGenerations": None}
    assert body["usage"]["models"]["act_two"]["dailyGenerations"] == 2
    assert body["creditBalance"] == settings.monthly_credits - 65
    assert body["tier"]["maxMonthlyCreditSpend"] == settings.monthly_credits


def test_usage_groups_credits_by_day(
    client: Any, alice: tuple[dict[str, Any], str], db: Database, clock: FakeClock
) -> None:
    account, key = alice
    clock.t = 1_795_000_000.0  # 2026-11-19T...
    _task(db, account["id"], created=clock.t, finished=clock.t, status="SUCCEEDED", cost=30)
    _task(db, account["id"], created=clock.t, finished=clock.t + 60, status="SUCCEEDED", cost=20)
    _task(db, account["id"], created=clock.t, finished=clock.t - DAY, status="SUCCEEDED", cost=15)
    res = client.post(
        "/v1/organization/usage",
        json={"startDate": "2026-11-01", "beforeDate": "2026-12-01"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert res.status_code == 200
    body = res.json()
    assert body["models"] == ["act_two"]
    assert [(r["date"], r["usedCredits"][0]["amount"]) for r in body["results"]] == [
        ("2026-11-17", 15),
        ("2026-11-18", 50),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"startDate": "yesterday"}, "startDate"),
        ({"startDate": "2026-11-10", "beforeDate": "2026-11-01"}, "beforeDate"),
        ({"startDate": "2026-01-01", "beforeDate": "2026-12-01"}, "beforeDate"),
        ({"extra": 1}, "extra"),
    ],
)
def test_usage_rejects_bad_ranges(
    client: Any, alice: tuple[dict[str, Any], str], body: Any, field: str
) -> None:
    res = client.post("/v1/organization/usage", json=body, headers={"Authorization": f"Bearer {alice[1]}"})
    assert res.status_code == 400
    assert res.json()["field"] == field


def test_usage_without_body_uses_defaults(client: Any, alice: tuple[dict[str, Any], str]) -> None:
    res = client.post("/v1/organization/usage", headers={"Authorization": f"Bearer {alice[1]}"})
    assert res.status_code == 200
    assert res.json() == {"models": [], "results": []}
