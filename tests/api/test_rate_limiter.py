"""The in-process GCRA limiter, on a clock the test moves."""

import pytest

from api.rate_limit import Decision, RateLimiter


def wait(limiter: RateLimiter, key: str) -> float:
    return limiter.acquire_now(key).wait_s


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_admitted_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)

    admitted = [wait(limiter, "key") for _ in range(3)]
    refused = wait(limiter, "key")
    clock.now += 0.5
    after_one_interval = wait(limiter, "key")
    refused_again = wait(limiter, "key")

    assert admitted == [0, 0, 0]
    assert refused == pytest.approx(0.5)
    assert after_one_interval == 0
    assert refused_again == pytest.approx(0.5)


def test_refused_requests_do_not_count() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    limiter.acquire_now("key")

    for _ in range(100):
        assert wait(limiter, "key") > 0
    clock.now += 1

    assert wait(limiter, "key") == 0


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=Clock())

    assert wait(limiter, "a") == 0
    assert wait(limiter, "a") > 0
    assert wait(limiter, "b") == 0


def test_idle_keys_are_forgotten_without_losing_busy_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.acquire_now(key)
    clock.now += 0.5
    limiter.acquire_now("busy")
    clock.now += 0.6

    # "a", "b" and "c" are idle again and forgotten; "busy" still waits out its interval.
    limiter.acquire_now("d")
    assert wait(limiter, "busy") > 0


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate_per_s=0, burst=1, clock=Clock())

    assert not limiter.enabled
    assert all(wait(limiter, "key") == 0 for _ in range(10_000))


def test_a_decision_says_what_is_left_of_the_burst_and_when_it_is_whole_again() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)

    first = limiter.acquire_now("key")
    limiter.acquire_now("key")
    last = limiter.acquire_now("key")
    refused = limiter.acquire_now("key")

    assert (first.remaining, first.reset_s) == (2, pytest.approx(0.5))
    assert (last.remaining, last.reset_s) == (0, pytest.approx(1.5))
    assert (refused.remaining, refused.reset_s) == (0, pytest.approx(1.5))


def test_rate_limit_fields_go_only_on_refusals_and_responses_near_the_limit() -> None:
    limiter = RateLimiter(rate_per_s=100, burst=200, clock=Clock())
    gcra = limiter.gcra

    well_within = gcra.headers(Decision(wait_s=0, remaining=150, reset_s=0.5))
    near = dict(gcra.headers(Decision(wait_s=0, remaining=19, reset_s=1.81)))
    refused = dict(gcra.headers(Decision(wait_s=0.01, remaining=0, reset_s=2)))

    assert well_within == []
    assert near == {
        b"ratelimit-policy": b'"default";q=200;w=2',
        b"ratelimit": b'"default";r=19;t=2',
    }
    assert refused[b"ratelimit"] == b'"default";r=0;t=2'
