"""The per-key token bucket as a table of (time, expected wait)."""

from __future__ import annotations

import pytest

from service import ratelimit


def test_burst_then_refill() -> None:
    buckets = ratelimit.TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", 0.0) == pytest.approx(0.5)
    assert buckets.take("k", 0.5) == 0.0
    assert buckets.take("k", 0.5) == pytest.approx(0.5)
    assert buckets.take("k", 10.0) == 0.0  # refilled, capped at burst


def test_keys_are_independent() -> None:
    buckets = ratelimit.TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0


def test_zero_rate_disables_limiting() -> None:
    buckets = ratelimit.TokenBuckets(rate=0.0, burst=1)
    assert all(buckets.take("k", 0.0) == 0.0 for _ in range(100))


def test_memory_is_bounded() -> None:
    buckets = ratelimit.TokenBuckets(rate=1.0, burst=1, max_keys=10)
    for i in range(100):
        buckets.take(f"k{i}", 0.0)
    assert len(buckets._buckets) == 10


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_header(wait: float, header: str) -> None:
    assert ratelimit.retry_after_header(wait) == header
