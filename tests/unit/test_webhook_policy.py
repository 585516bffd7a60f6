"""Delivery policy tables: classification, Retry-After, the schedule, disabling, rate limits."""

from __future__ import annotations

import email.utils

import pytest

from service.webhooks import policy

NOW = 1_800_000_000.0
DEFAULT = policy.Schedule(delays=(0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400))


@pytest.mark.parametrize(
    ("status", "error_class", "outcome"),
    [
        (200, None, policy.SUCCESS),
        (204, None, policy.SUCCESS),
        (299, None, policy.SUCCESS),
        (301, "redirect", policy.RETRY),
        (302, "redirect", policy.RETRY),
        (400, None, policy.RETRY),
        (404, None, policy.RETRY),
        (410, None, policy.GONE),
        (429, None, policy.THROTTLED),
        (500, None, policy.RETRY),
        (502, None, policy.THROTTLED),
        (503, None, policy.THROTTLED),
        (504, None, policy.THROTTLED),
        (None, "timeout", policy.THROTTLED),
        (None, "connection", policy.RETRY),
        (None, "blocked", policy.RETRY),
    ],
)
def test_classify(status: int | None, error_class: str | None, outcome: str) -> None:
    assert policy.classify(status, error_class) == outcome


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("0", 0.0),
        ("soon", None),
        ("-5", None),
        (email.utils.formatdate(NOW + 600, usegmt=True), 600.0),  # an HTTP date
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert policy.parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("attempts_made", "outcome", "retry_after", "rand", "delay"),
    [
        (1, policy.RETRY, None, 0.5, 5.0),  # second attempt after 5 s
        (2, policy.RETRY, None, 0.5, 300.0),
        (3, policy.RETRY, None, 0.5, 1800.0),
        (9, policy.RETRY, None, 0.5, 86400.0),  # the tenth and last
        (10, policy.RETRY, None, 0.5, None),  # schedule used up: give up
        (1, policy.RETRY, None, 0.0, 4.0),  # -20 % jitter
        (1, policy.RETRY, None, 0.999999, pytest.approx(6.0, abs=1e-4)),  # +20 %
        (1, policy.THROTTLED, None, 0.5, 60.0),  # 429/5xx/timeout floor
        (3, policy.THROTTLED, None, 0.5, 1800.0),  # the floor never shortens
        (1, policy.RETRY, 120.0, 0.5, 120.0),  # Retry-After honoured
        (3, policy.RETRY, 10.0, 0.5, 1800.0),  # ...but never shortens the schedule
        (1, policy.THROTTLED, 10 * 86400.0, 0.5, 86400.0),  # ...and is clamped
        (1, policy.SUCCESS, None, 0.5, None),
        (1, policy.GONE, 120.0, 0.5, None),  # 410 stops at once
    ],
)
def test_next_delay(
    attempts_made: int, outcome: str, retry_after: float | None, rand: float, delay: object
) -> None:
    assert DEFAULT.next_delay(attempts_made, outcome, retry_after=retry_after, rand=rand) == delay


def test_default_schedule_spans_about_three_days() -> None:
    total = sum(DEFAULT.delays)
    assert 2.5 * 86400 < total < 3.5 * 86400


@pytest.mark.parametrize(
    ("failing_since", "now", "disable"),
    [
        (None, NOW, False),
        (NOW - 86400, NOW, False),
        (NOW - 5 * 86400 + 1, NOW, False),
        (NOW - 5 * 86400, NOW, True),
        (NOW - 9 * 86400, NOW, True),
    ],
)
def test_should_disable_after_five_days_without_success(
    failing_since: float | None, now: float, disable: bool
) -> None:
    assert policy.should_disable(failing_since, now, 5 * 86400) is disable


@pytest.mark.parametrize(
    ("tat", "rate", "wanted", "granted", "held"),
    [
        (None, 2.0, 1, 1, ()),
        (None, 2.0, 2, 2, ()),  # a burst of one second's worth
        (None, 2.0, 5, 2, (NOW + 0.5, NOW + 1.0, NOW + 1.5)),  # the rest spaced at the limit
        (NOW + 1.0, 2.0, 1, 0, (NOW + 0.5,)),  # bucket empty: next slot in 0.5 s
        (NOW + 0.5, 2.0, 3, 1, (NOW + 0.5, NOW + 1.0)),
        (NOW - 100.0, 1.0, 3, 1, (NOW + 1.0, NOW + 2.0)),  # long idle does not bank a burst
        (None, 10.0, 0, 0, ()),
    ],
)
def test_rate_take(
    tat: float | None, rate: float, wanted: int, granted: int, held: tuple[float, ...]
) -> None:
    grant = policy.rate_take(tat, NOW, rate, wanted)
    assert grant.granted == granted
    assert grant.held_until == pytest.approx(held)


def test_rate_limit_drains_a_backlog_at_the_limit() -> None:
    tat, now, sent = None, NOW, 0
    for _ in range(40):  # 10 s in steps of a quarter second
        grant = policy.rate_take(tat, now, 3.0, 100)
        tat, sent = grant.tat, sent + grant.granted
        now += 0.25
    assert 30 <= sent <= 33  # 3/s for 10 s plus the initial burst of 3
