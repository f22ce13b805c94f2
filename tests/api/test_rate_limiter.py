"""The in-process GCRA limiter, on a clock the test moves."""

import pytest

from api.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_admitted_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)

    admitted = [limiter.acquire("key") for _ in range(3)]
    refused = limiter.acquire("key")
    clock.now += 0.5
    after_one_interval = limiter.acquire("key")
    refused_again = limiter.acquire("key")

    assert admitted == [0, 0, 0]
    assert refused == pytest.approx(0.5)
    assert after_one_interval == 0
    assert refused_again == pytest.approx(0.5)


def test_refused_requests_do_not_count() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    limiter.acquire("key")

    for _ in range(100):
        assert limiter.acquire("key") > 0
    clock.now += 1

    assert limiter.acquire("key") == 0


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=Clock())

    assert limiter.acquire("a") == 0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0


def test_idle_keys_are_forgotten_without_losing_busy_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.acquire(key)
    clock.now += 0.5
    limiter.acquire("busy")
    clock.now += 0.6

    # "a", "b" and "c" are idle again and forgotten; "busy" still waits out its interval.
    limiter.acquire("d")
    assert limiter.acquire("busy") > 0


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate_per_s=0, burst=1, clock=Clock())

    assert not limiter.enabled
    assert all(limiter.acquire("key") == 0 for _ in range(10_000))
