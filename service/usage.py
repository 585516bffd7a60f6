"""Usage and limits of an account, in the shape of Runway's organization resource.

Callboard does not sell credits: ``creditBalance`` is what remains of the account's
rolling 30-day allowance (``CALLBOARD_MONTHLY_CREDITS``) after what its tasks cost, and
``maxConcurrentGenerations`` is the account's ``maxJobs``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service import errors
from service import models as m

t = m.tasks
DAY = 86400.0
MAX_RANGE_DAYS = 90


def _credits_since(conn: Connection, account_id: str, since: float) -> int:
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(t.c.cost_credits), 0)).where(
            t.c.account_id == account_id, t.c.status == "SUCCEEDED", t.c.finished_at >= since
        )
    ).scalar_one()
    return int(total)


def organization(
    conn: Connection, account: dict[str, Any], *, now: float, monthly_credits: int
) -> dict[str, Any]:
    """``GET /v1/organization`` for the calling account."""
    used = _credits_since(conn, account["id"], now - 30 * DAY)
    daily = conn.execute(
        sa.select(sa.func.count())
        .select_from(t)
        .where(t.c.account_id == account["id"], t.c.created_at >= now - DAY)
    ).scalar_one()
    return {
        "creditBalance": max(0, monthly_credits - used),
        "tier": {
            "maxMonthlyCreditSpend": monthly_credits,
            "models": {
                "act_two": {"maxConcurrentGenerations": account["max_jobs"], "maxDailyGenerations": None}
            },
        },
        "usage": {"models": {"act_two": {"dailyGenerations": int(daily)}}},
    }


def _parse_date(value: Any, field: str) -> dt.date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.ValidationError(f"{field}: must be a date like 2026-11-01", field=field)
    try:
        return dt.date.fromisoformat(value[:10]) if len(value) >= 10 else dt.date.fromisoformat(value)
    except ValueError:
        raise errors.ValidationError(f"{field}: must be a date like 2026-11-01", field=field) from None


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def usage(conn: Connection, account_id: str, body: Any, *, now: float) -> dict[str, Any]:
    """``POST /v1/organization/usage``: credits per day and model between two dates.

    Defaults follow Runway: start 30 days ago, end 30 days after the start; at most 90
    days; the end date is exclusive.
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    unknown = sorted(set(body) - {"startDate", "beforeDate"})
    if unknown:
        raise errors.ValidationError(f"{unknown[0]}: is not a recognised field", field=unknown[0])
    today = dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
    start = _parse_date(body.get("startDate"), "startDate") or today - dt.timedelta(days=30)
    before = _parse_date(body.get("beforeDate"), "beforeDate") or start + dt.timedelta(days=30)
    if before <= start:
        raise errors.ValidationError("beforeDate: must be after startDate", field="beforeDate")
    if (before - start).days > MAX_RANGE_DAYS:
        raise errors.ValidationError(
            f"beforeDate: must be at most {MAX_RANGE_DAYS} days after startDate", field="beforeDate"
        )
    rows = conn.execute(
        sa.select(t.c.finished_at, t.c.cost_credits).where(
            t.c.account_id == account_id,
            t.c.status == "SUCCEEDED",
            t.c.finished_at >= _epoch(start),
            t.c.finished_at < _epoch(before),
        )
    ).all()
    per_day: dict[dt.date, int] = defaultdict(int)
    for finished_at, cost in rows:
        per_day[dt.datetime.fromtimestamp(finished_at, tz=dt.UTC).date()] += int(cost or 0)
    results = [
        {"date": day.isoformat(), "usedCredits": [{"amount": amount, "model": "act_two"}]}
        for day, amount in sorted(per_day.items())
    ]
    return {"models": ["act_two"] if results else [], "results": results}
