"""Per-key rate limits: in process memory, or one limit across every API process, in Redis.

Both run GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per key):
each request moves the key's theoretical arrival time (TAT) one emission interval on; a request
that would move it further ahead of now than the burst allows is refused, and told how long until
it would fit. Refused requests do not count.

- `RateLimiter` keeps the TATs in this process: no round trip, but N processes admit up to N
  times the rate (RATE_LIMIT_SCOPE=process).
- `ClusterRateLimiter` keeps them in Redis, read and moved by one Lua script on Redis's own clock,
  at most one round trip a request, shared by the requests that ask together
  (RATE_LIMIT_SCOPE=cluster). While Redis does not answer within
  RATE_LIMIT_REDIS_TIMEOUT_S it falls back to a `RateLimiter` of its own, so that requests are
  served, each process limiting alone, and tries Redis again a second later
  (docs/decisions/0035-cluster-rate-limit.md).

`headers` gives the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers), sent on 429s and
on responses near the limit only.
"""

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from kit.batching import Batched
from kit.metrics import RATE_LIMIT_FALLBACKS
from kit.redis import REDIS_UNAVAILABLE_ERRORS

log = structlog.get_logger(__name__)

POLICY = "default"
# RateLimit fields go on responses with less than this share of the burst left, and on 429s.
NEAR_LIMIT_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class Decision:
    # 0 when the request may proceed (and counts), else the seconds until it would.
    wait_s: float
    # Requests the key may still make at once.
    remaining: int
    # Seconds until the key's whole burst is available again.
    reset_s: float


ADMITTED = Decision(0.0, 0, 0.0)


class Limiter(Protocol):
    enabled: bool
    gcra: "Gcra"

    async def acquire(self, key: int) -> Decision: ...


class Gcra:
    """The limit's arithmetic, shared by both scopes: interval and tolerance from rate and burst."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.tolerance_s = self.interval_s * burst
        self.burst = burst
        self.enabled = self.interval_s > 0
        # The policy's window: how long an emptied burst takes to fill again.
        self.window_s = max(1, math.ceil(self.tolerance_s))

    def decide(self, tat: float, now: float) -> tuple[float | None, Decision]:
        """The key's new TAT (None: refused, the TAT stays) and the decision."""
        arrival = max(tat, now) + self.interval_s
        ahead_s = arrival - now
        if ahead_s > self.tolerance_s:
            return None, Decision(ahead_s - self.tolerance_s, 0, max(tat, now) - now)
        remaining = int((self.tolerance_s - ahead_s) / self.interval_s + 1e-9)
        return arrival, Decision(0.0, remaining, ahead_s)

    def headers(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        """`RateLimit-Policy` and `RateLimit` for a refused or nearly refused request; none for
        one well within the limit, whose response stays as it is (see the module docstring)."""
        if decision.wait_s == 0 and decision.remaining >= self.burst * NEAR_LIMIT_SHARE:
            return []
        return [
            (b"ratelimit-policy", f'"{POLICY}";q={self.burst};w={self.window_s}'.encode()),
            (
                b"ratelimit",
                f'"{POLICY}";r={decision.remaining};t={math.ceil(decision.reset_s)}'.encode(),
            ),
        ]


class RateLimiter:
    """The limit in this process's memory."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.gcra = Gcra(rate_per_s, burst)
        self.enabled = self.gcra.enabled
        self._clock = clock
        self._max_keys = max_keys
        self._arrivals: dict[Hashable, float] = {}

    def acquire_now(self, key: Hashable) -> Decision:
        if not self.enabled:
            return ADMITTED
        now = self._clock()
        tat, decision = self.gcra.decide(self._arrivals.get(key, now), now)
        if tat is not None:
            if len(self._arrivals) >= self._max_keys:
                self._forget_idle(now)
            self._arrivals[key] = tat
        return decision

    async def acquire(self, key: int) -> Decision:
        return self.acquire_now(key)

    def _forget_idle(self, now: float) -> None:
        # A key whose arrival time has passed has a full bucket: forgetting it changes nothing.
        self._arrivals = {key: at for key, at in self._arrivals.items() if at > now}


# KEYS: the keys asking, one entry per request (a key may come twice), each holding its TAT in
# microseconds of Redis's clock (so that API hosts' clocks do not matter). ARGV: interval and
# tolerance in microseconds. Returns four integers per request: admitted (1/0), the wait and the
# reset in microseconds, and the remaining burst. Times in microseconds stay below 2^53, exact in
# Lua's doubles; a TAT is stored as an integer string ('%d'), where Lua would print exponents.
GCRA_LUA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local out = {}
for _, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local ahead = tat + interval - now
  if ahead > tolerance then
    table.insert(out, 0)
    table.insert(out, ahead - tolerance)
    table.insert(out, tat - now)
    table.insert(out, 0)
  else
    redis.call('SET', key, string.format('%d', tat + interval), 'PX', math.ceil(ahead / 1000) + 1)
    table.insert(out, 1)
    table.insert(out, 0)
    table.insert(out, ahead)
    table.insert(out, math.floor((tolerance - ahead) / interval + 1e-9))
  end
end
return out
"""
# The digest Redis names the script by (SHA-1 is Redis's choice, not a security measure).
_GCRA_SHA = hashlib.sha1(GCRA_LUA.encode(), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class _Ask:
    key: str
    reply: Decision = ADMITTED


class ClusterRateLimiter:
    """The limit in Redis, one per key across every process; `fallback` while Redis is away.

    The requests of this process that ask while a call is on its way go together in the next
    one (kit.batching): one script call for all of them, so that under load the round trip is
    shared, and each request still costs at most one.
    """

    RETRY_REDIS_AFTER_S = 1.0

    def __init__(
        self, redis: Redis, fallback: RateLimiter, *, timeout_s: float, prefix: str = "ratelimit:"
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self.gcra = fallback.gcra
        self.enabled = fallback.enabled
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._args = (
            str(round(self.gcra.interval_s * 1e6)),
            str(round(self.gcra.tolerance_s * 1e6)),
        )
        self._asks: Batched[_Ask] = Batched(self._ask_redis)
        self._redis_back_at = 0.0

    async def acquire(self, key: int) -> Decision:
        if not self.enabled:
            return ADMITTED
        if time.monotonic() < self._redis_back_at:
            return self._fallback.acquire_now(key)
        ask = _Ask(f"{self._prefix}{key}")
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._asks.add(ask)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # A request that timed out may still be counted in Redis: it errs on the strict side
            # only while Redis is slow.
            self._redis_back_at = time.monotonic() + self.RETRY_REDIS_AFTER_S
            RATE_LIMIT_FALLBACKS.inc()
            log.warning("rate_limit_fallback_to_process", error=repr(exc))
            return self._fallback.acquire_now(key)
        return ask.reply

    async def _ask_redis(self, asks: list[_Ask]) -> None:
        keys = [ask.key for ask in asks]
        # EVALSHA, which sends the script's digest only; EVAL on NOSCRIPT (a restarted or failed
        # over Redis has no scripts), which also caches the script there again.
        try:
            reply: list[int] = await self._redis.evalsha(_GCRA_SHA, len(keys), *keys, *self._args)  # type: ignore[misc]
        except NoScriptError:
            reply = await self._redis.eval(GCRA_LUA, len(keys), *keys, *self._args)  # type: ignore[misc]
        for n, ask in enumerate(asks):
            admitted, wait_us, reset_us, remaining = reply[4 * n : 4 * n + 4]
            ask.reply = Decision(0.0 if admitted else wait_us / 1e6, remaining, reset_us / 1e6)
