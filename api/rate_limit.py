"""A per-key rate limit kept in process memory: no Redis round trip on any request.

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per key): each request
moves the key's theoretical arrival time one emission interval on; a request that would move it
further than the burst allows ahead of now is refused, and told how long until it would fit.
The limit holds per API process: N processes admit up to N times the rate.
"""

import time
from collections.abc import Callable, Hashable


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._tolerance_s = self._interval_s * burst
        self._clock = clock
        self._max_keys = max_keys
        self._arrivals: dict[Hashable, float] = {}

    @property
    def enabled(self) -> bool:
        return self._interval_s > 0

    def acquire(self, key: Hashable) -> float:
        """0 when the request may proceed (and counts), else the seconds until it would."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        arrival = max(self._arrivals.get(key, now), now) + self._interval_s
        ahead_s = arrival - now - self._tolerance_s
        if ahead_s > 0:
            return ahead_s
        if len(self._arrivals) >= self._max_keys:
            self._forget_idle(now)
        self._arrivals[key] = arrival
        return 0.0

    def _forget_idle(self, now: float) -> None:
        # A key whose arrival time has passed has a full bucket: forgetting it changes nothing.
        self._arrivals = {key: at for key, at in self._arrivals.items() if at > now}
