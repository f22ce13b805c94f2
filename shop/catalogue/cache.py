"""The catalogue's cache: a Redis tier with race-free invalidation, and an in-process tier.

Invalidation without races: every cache entry is stored together with the generation token that
was current when its reader *started*. A write, after it commits, replaces the generation token
with a fresh random one. A reader that loaded the old row from Postgres before the commit can
still store its value, but it is stored under the old token and is never served: a read after a
write never shows the old value. Tokens are random rather than counters so that a token lost to
a Redis restart can never come back and revalidate an old entry.
"""

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis

from kit.metrics import CACHE_LOOKUPS
from kit.redis import REDIS_UNAVAILABLE_ERRORS

log = structlog.get_logger(__name__)

_SEPARATOR = b"|"
_NO_GENERATION = b"-"
LIST_GENERATION_KEY = "catalogue:list:gen"
_PAGE_PREFIX = "catalogue:list:"
# Invalidations between processes' local tiers, and their acknowledgements.
INVALIDATION_CHANNEL = "catalogue:invalidate"
ACK_CHANNEL = "catalogue:invalidate:ack"
# The nonce of an invalidation whose sender waits for no acknowledgement (what processes of an
# earlier release send for stock taken, while a rolling deploy runs both).
_NO_ACK = "-"
_LOCAL_MAX_ENTRIES = 100_000
# The share of an entry's life after which reading it reloads it in the background.
_RELOAD_AFTER = 0.5
PRODUCT_PREFIX = "catalogue:product:"
_LOCAL_HIT = CACHE_LOOKUPS.labels("hit")
_MAX_BACKOFF_S = 5.0


def product_key(product_id: int) -> str:
    return f"{PRODUCT_PREFIX}{product_id}"


def product_generation_key(product_id: int) -> str:
    return f"catalogue:product:{product_id}:gen"


def page_key(after_id: int, limit: int) -> str:
    return f"catalogue:list:{after_id}:{limit}"


class ProductCache:
    """Two tiers: an optional in-process tier in front of the Redis tier described above.

    The in-process tier ("local") saves the Redis round trip that dominates a cached read
    (docs/decisions/0004-in-process-cache-tier.md). It keeps the same guarantee, a read that
    starts after a write's response was sent never shows the old value, in any process:

    - The writing process drops its own local entries synchronously, after the commit.
    - Every process that keeps local entries subscribes to INVALIDATION_CHANNEL. A writer
      publishes the product ids after the commit and waits until every subscriber has dropped
      them and acknowledged (Redis tells it how many received the message), at most
      `local_ttl_s`.
    - A local entry expires `local_ttl_s` after its reader *started*, so a process that did not
      acknowledge in time (stalled, or cut off) holds nothing from before the write once the
      writer stops waiting. A reader that read the old value before an invalidation arrived
      cannot store it afterwards: every invalidation bumps an epoch the reader noted at its start.
    - A process serves local entries only while its subscription is up; when it is lost the
      local tier is emptied and bypassed until the subscription is back. A writer that cannot
      publish (Redis down) waits `local_ttl_s` instead of the acknowledgements.

    Refresh ahead: a product entry read in the second half of its life is reloaded in the
    background (one reload per entry at a time) while readers are still served the entry, which
    is current until it expires. A product read all the time therefore never misses here; without
    it every hot product expired every `local_ttl_s` and its readers queued for Redis together
    (cached-read p99 ~100 ms against 12 ms with no expiry; docs/decisions/0009-refresh-ahead.md).
    The reload is a reader like any other, with its own ticket, so the guarantee above is
    unchanged.

    Stock moved by an order (`stock_taken`) is the exception: a product being sold changes with
    every order, and dropping it from every process each time would leave its readers nothing to
    hit. The Redis tier is refreshed at once and the other processes' local entries are left to
    expire, within `local_ttl_s`, reloaded ahead like any other: the stock a product read shows
    lags the orders by at most `local_ttl_s`, and the reservation stays the authority on whether
    an order fits (docs/decisions/0028-stock-lags-orders-by-the-local-ttl.md).
    """

    def __init__(self, redis: Redis, ttl_s: int, local_ttl_s: float = 0.0) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._local_ttl_s = local_ttl_s
        self.hits = 0
        self.misses = 0
        self.local_hits = 0
        # key -> (expires at, reload from, payload); list pages apart, as every write drops all.
        self._local: dict[str, tuple[float, float, bytes]] = {}
        self._local_pages: dict[str, tuple[float, float, bytes]] = {}
        self._reload: Callable[[str], Awaitable[None]] | None = None
        self._reloading: dict[str, asyncio.Task[None]] = {}
        self._epoch = 0
        self._listening = False
        self._acks: dict[str, list[int]] = {}
        self._ack_events: dict[str, asyncio.Event] = {}

    @property
    def local_enabled(self) -> bool:
        return self._local_ttl_s > 0 and self._listening

    # --- the in-process tier ---------------------------------------------------------------

    def local_peek(self, key: str) -> bytes | None:
        """The local entry if it is current, without counting a hit."""
        if not self.local_enabled:
            return None
        entry = (self._local_pages if key.startswith(_PAGE_PREFIX) else self._local).get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[0] <= now:
            return None
        if entry[1] <= now and self._reload is not None and key not in self._reloading:
            self._reloading[key] = asyncio.get_running_loop().create_task(self._reload_entry(key))
        return entry[2]

    def reload_ahead(self, reload: Callable[[str], Awaitable[None]]) -> None:
        """Turns refresh ahead on for the keys `reload(key)` knows how to load (see the class)."""
        self._reload = reload

    async def _reload_entry(self, key: str) -> None:
        assert self._reload is not None
        try:
            await self._reload(key)
        except Exception as exc:  # the entry then expires, and its next reader loads it
            log.warning("cache_reload_failed", key=key, error=repr(exc))
        finally:
            self._reloading.pop(key, None)

    async def close(self) -> None:
        """Cancels the reloads still running; call before closing what they use."""
        tasks = list(self._reloading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def count_local_hit(self) -> None:
        self.local_hits += 1
        _LOCAL_HIT.inc()

    def local_get(self, key: str) -> bytes | None:
        payload = self.local_peek(key)
        if payload is not None:
            self.count_local_hit()
        return payload

    def ticket(self) -> tuple[float, int]:
        """Taken before a read that may fill the local tier: when it started, which epoch."""
        return time.monotonic(), self._epoch

    def local_put(self, key: str, payload: bytes, ticket: tuple[float, int]) -> None:
        started, epoch = ticket
        if not self.local_enabled or epoch != self._epoch:
            return
        entries = self._local_pages if key.startswith(_PAGE_PREFIX) else self._local
        if len(entries) >= _LOCAL_MAX_ENTRIES:
            entries.clear()
        expires = started + self._local_ttl_s
        # Only products are reloaded ahead; a page's reload time is its expiry, never reached.
        reload_from = (
            expires if entries is self._local_pages else started + self._local_ttl_s * _RELOAD_AFTER
        )
        entries[key] = (expires, reload_from, payload)

    def _drop_local(self, product_ids: Sequence[int]) -> None:
        self._epoch += 1
        for product_id in product_ids:
            self._local.pop(product_key(product_id), None)
        self._local_pages.clear()

    def clear_local(self) -> None:
        self._epoch += 1
        self._local.clear()
        self._local_pages.clear()

    async def listen(self) -> None:
        """Runs until cancelled: applies other processes' invalidations and acknowledges them."""
        backoff_s = 0.0
        this = asyncio.current_task()
        # redis-py can swallow a cancellation that lands inside a read: check for one each turn.
        while this is None or not this.cancelling():
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(INVALIDATION_CHANNEL, ACK_CHANNEL)
                while this is None or not this.cancelling():
                    message = await pubsub.get_message(timeout=0.5)
                    if message is not None:
                        await self._on_message(message)
                        backoff_s = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener must outlive any single failure
                self._listening = False
                self.clear_local()
                backoff_s = min(_MAX_BACKOFF_S, max(0.1, backoff_s * 2))
                log.warning("cache_listener_failed", error=repr(exc), retry_in_s=backoff_s)
                await asyncio.sleep(backoff_s)
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind, channel, data = message["type"], message["channel"], message["data"]
        if kind == "subscribe" and channel == INVALIDATION_CHANNEL.encode():
            self.clear_local()
            self._listening = True
            # At start and after every reconnect (a Redis restart, a sentinel failover).
            log.info("cache_listener_subscribed")
        elif kind == "message" and channel == INVALIDATION_CHANNEL.encode():
            nonce, _, ids = data.decode().partition(" ")
            self._drop_local([int(i) for i in ids.split(",") if i])
            if nonce != _NO_ACK:
                await self._redis.publish(ACK_CHANNEL, nonce)
        elif kind == "message" and channel == ACK_CHANNEL.encode():
            nonce = data.decode()
            event = self._ack_events.get(nonce)
            if event is not None:
                self._acks[nonce][0] += 1
                if self._acks[nonce][0] >= self._acks[nonce][1]:
                    event.set()

    async def _broadcast(self, product_ids: Sequence[int]) -> None:
        """Tells every process to drop these products; returns once each has, or may have."""
        nonce = secrets.token_hex(8)
        message = nonce + " " + ",".join(map(str, product_ids))
        try:
            if self._listening:
                await self._broadcast_and_wait(nonce, message)
            else:
                # A process without a listener (the CLI, a test) hears the acks on its own.
                await self._broadcast_and_wait_subscribed(nonce, message)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # Nobody could be told: wait until every local entry from before the write is gone.
            log.warning("cache_broadcast_failed", error=repr(exc))
            await asyncio.sleep(self._local_ttl_s)

    async def _broadcast_and_wait(self, nonce: str, message: str) -> None:
        event = asyncio.Event()
        # The expected count is unknown until PUBLISH answers, and acks may arrive before that.
        self._acks[nonce] = [0, 1 << 62]
        self._ack_events[nonce] = event
        try:
            receivers = int(await self._redis.publish(INVALIDATION_CHANNEL, message))
            self._acks[nonce][1] = receivers
            if self._acks[nonce][0] >= receivers:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._local_ttl_s):
                    await event.wait()
        finally:
            self._acks.pop(nonce, None)
            self._ack_events.pop(nonce, None)

    async def _broadcast_and_wait_subscribed(self, nonce: str, message: str) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(ACK_CHANNEL)
            deadline = time.monotonic() + self._local_ttl_s
            while (await pubsub.get_message(timeout=self._local_ttl_s)) is None:
                if time.monotonic() > deadline:
                    return  # local_ttl_s has passed: every earlier entry has expired
            receivers = int(await self._redis.publish(INVALIDATION_CHANNEL, message))
            acks = 0
            while acks < receivers and (remaining := deadline - time.monotonic()) > 0:
                reply = await pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
                if reply is not None and reply["data"] == nonce.encode():
                    acks += 1
        finally:
            with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # --- the Redis tier --------------------------------------------------------------------

    async def lookup(self, key: str, generation_key: str) -> tuple[bytes | None, bytes | None]:
        """(cached payload or None, the generation to fill with); (None, None) if Redis is down."""
        try:
            generation, entry = await self._redis.mget(generation_key, key)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_unavailable", error=repr(exc))
            return None, None
        generation = generation or _NO_GENERATION
        if entry is not None:
            entry_generation, _, payload = entry.partition(_SEPARATOR)
            if entry_generation == generation:
                self.hits += 1
                CACHE_LOOKUPS.labels("hit").inc()
                return payload, generation
        self.misses += 1
        CACHE_LOOKUPS.labels("miss").inc()
        return None, generation

    async def fill(self, key: str, generation: bytes, payload: bytes) -> None:
        try:
            await self._redis.set(key, generation + _SEPARATOR + payload, ex=self._ttl_s)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_unavailable", error=repr(exc))

    async def invalidate_products(self, product_ids: Sequence[int]) -> None:
        """Call after the write has committed. If Redis is unreachable the entries expire by TTL.

        Returns once no process can serve the old value from its local tier (see the class).
        """
        self._drop_local(product_ids)
        try:
            await self._redis.mset(self._new_generations(product_ids))
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_invalidation_failed", product_ids=list(product_ids), error=repr(exc))
        if self._local_ttl_s > 0:
            await self._broadcast(product_ids)

    async def stock_taken(self, product_ids: Sequence[int]) -> None:
        """Call after an order's reservation has committed: the Redis tier now, local tiers by TTL.

        Nobody waits on this: the order's state is visible in Postgres before any cache could
        say anything, and other processes keep serving their entries until they expire (see the
        class). If Redis is unreachable its entries expire by their TTL.
        """
        self._drop_local(product_ids)
        try:
            await self._redis.mset(self._new_generations(product_ids))
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_invalidation_failed", product_ids=list(product_ids), error=repr(exc))

    @staticmethod
    def _new_generations(product_ids: Sequence[int]) -> dict[str, str]:
        tokens = {product_generation_key(pid): secrets.token_hex(8) for pid in product_ids}
        tokens[LIST_GENERATION_KEY] = secrets.token_hex(8)
        return tokens


async def cached(
    cache: ProductCache, key: str, generation_key: str, load: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The local tier, else the Redis tier, else `load()` (Postgres), filling both on the way."""
    local = cache.local_get(key)
    if local is not None:
        return local
    return await load_through(cache, key, generation_key, load)


async def load_through(
    cache: ProductCache, key: str, generation_key: str, load: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The Redis tier, else `load()`, filling the Redis tier and this process's tier."""
    ticket = cache.ticket()
    payload, generation = await cache.lookup(key, generation_key)
    if payload is None:
        payload = await load()
        if generation is None:  # Redis is down: nothing may be cached anywhere
            return payload
        await cache.fill(key, generation, payload)
    cache.local_put(key, payload, ticket)
    return payload
