"""A token bucket per API key id: `per_minute` requests a minute on average, at most `burst`
at once. In memory, per API process (each replica limits on its own)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, per_minute: int, burst: int) -> float:
        """Spend one request of `key_id`'s allowance: 0 when allowed, else the seconds until the
        next request would be (nothing is spent by a refused one)."""
        capacity = float(max(1, min(burst, per_minute)))
        per_second = per_minute / 60.0
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second
