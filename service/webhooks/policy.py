"""Delivery policy as pure functions: what an attempt's outcome means and when to try again.

Nothing here touches the database, the network or the clock: ``now`` and the random
draw are passed in, so every rule is tested as a table (tests/unit/test_webhook_policy.py).

The rules (WEBHOOKS.md):

* only 2xx is success; 3xx is a failure (redirects are never followed);
* the schedule gives the delay before each attempt (the first is normally 0); its
  length is the attempt budget; every non-zero delay gets +-``jitter`` (20 %);
* 429, 502, 503, 504 and timeouts wait at least ``floor`` (60 s);
* ``Retry-After`` (seconds or an HTTP date) is honoured, clamped to ``max_retry_after``,
  and never shortens the schedule;
* 410 Gone stops at once;
* an endpoint with no success for ``disable_after`` (5 days) is disabled.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
from collections.abc import Sequence

SUCCESS = "success"
GONE = "gone"
THROTTLED = "throttled"  # retry, but not sooner than the floor
RETRY = "retry"

THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
SLOW_ERRORS = frozenset({"timeout"})


def classify(status_code: int | None, error_class: str | None) -> str:
    """The meaning of one attempt: SUCCESS, GONE, THROTTLED or RETRY.

    ``status_code`` is None when no HTTP response arrived; ``error_class`` then says why
    (``timeout``, ``connection``, ``blocked``, ...).
    """
    if status_code is not None:
        if 200 <= status_code < 300:
            return SUCCESS
        if status_code == 410:
            return GONE
        if status_code in THROTTLE_STATUSES:
            return THROTTLED
        return RETRY
    if error_class in SLOW_ERRORS:
        return THROTTLED
    return RETRY


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or
    None when absent or unreadable. Dates in the past give 0."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def jittered(delay: float, jitter: float, rand: float) -> float:
    """``delay`` moved by up to +-``jitter`` of itself; ``rand`` is uniform in [0, 1)."""
    if delay <= 0:
        return 0.0
    return delay * (1.0 + jitter * (2.0 * rand - 1.0))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The retry configuration (from settings), as one value."""

    delays: Sequence[float]
    jitter: float = 0.2
    floor: float = 60.0
    max_retry_after: float = 86400.0

    def next_delay(
        self, attempts_made: int, outcome: str, *, retry_after: float | None = None, rand: float = 0.5
    ) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` attempts ended in
        ``outcome``, or None to give up (success, 410, or the schedule is used up)."""
        if outcome in (SUCCESS, GONE) or attempts_made >= len(self.delays):
            return None
        delay = jittered(float(self.delays[attempts_made]), self.jitter, rand)
        if outcome == THROTTLED:
            delay = max(delay, self.floor)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


def should_disable(failing_since: float | None, now: float, disable_after: float) -> bool:
    """True when an endpoint has been failing, without one success, for ``disable_after``."""
    return failing_since is not None and now - failing_since >= disable_after


@dataclasses.dataclass(frozen=True)
class RateGrant:
    granted: int
    tat: float  # the limiter's new state
    held_until: tuple[float, ...]  # when each request not granted may go


def rate_take(tat: float | None, now: float, rate: float, wanted: int) -> RateGrant:
    """Take up to ``wanted`` sends from a per-second limit (GCRA, burst of one second).

    ``tat`` is the stored theoretical arrival time (None: idle). A request conforms if
    ``tat - burst_window <= now``; each accepted request moves ``tat`` on by ``1/rate``.
    Requests not granted get the times their slots open, spaced ``1/rate`` apart, so a
    recovering endpoint is drained at the limit instead of all at once.
    """
    interval = 1.0 / rate
    tolerance = interval * (max(1, math.floor(rate)) - 1)
    current = now if tat is None else max(tat, now)
    granted = 0
    while granted < wanted and current - tolerance <= now + 1e-9:
        current += interval
        granted += 1
    first_free = max(now, current - tolerance)
    held = tuple(first_free + i * interval for i in range(wanted - granted))
    return RateGrant(granted=granted, tat=current, held_until=held)
