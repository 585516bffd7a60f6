"""Time as an injected dependency, so schedules can be tested with a fake clock.

Times are Unix epoch seconds (float, UTC) everywhere in the database and the domain;
they are turned into ISO-8601 strings only at the edges (API, webhook payloads).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


def iso(ts: float) -> str:
    """Runway's timestamp form: ISO-8601 UTC with milliseconds and a ``Z``."""
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> float:
    """Parse an ISO-8601 timestamp (``Z`` or offset; naive means UTC) to epoch seconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
