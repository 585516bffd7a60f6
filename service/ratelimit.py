"""Per-key request rate limiting: a token bucket per API key, in process memory.

Pure and clock-injected so it can be tested as a table. Each web process limits on
its own (with N web processes a key gets up to N times the rate); the limit exists to
stop a runaway client from starving others, not to bill.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class TokenBuckets:
    """``rate`` tokens per second up to ``burst``; one request costs one token."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0.0 if the request may proceed, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after_header(wait: float) -> str:
    """Whole seconds, rounded up, at least 1 (what clients parse)."""
    return str(max(1, math.ceil(wait)))
