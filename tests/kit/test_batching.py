"""Callers that arrive together share one call, and each learns how that call went."""

import asyncio

import pytest

from kit.batching import Batched, GroupedCalls


class Recorder:
    """A call that takes a turn of the event loop, like a round trip, and can be made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.failures: list[Exception] = []

    async def __call__(self, items: list[int]) -> None:
        self.calls.append(items)
        await asyncio.sleep(0.01)
        if self.failures:
            raise self.failures.pop(0)


async def test_callers_arriving_during_a_call_share_the_next_one() -> None:
    recorder = Recorder()
    batched = Batched(recorder)

    first = asyncio.create_task(batched.add(1))
    await asyncio.sleep(0)  # the first call is under way
    await asyncio.gather(first, *(batched.add(n) for n in (2, 3, 4)))

    assert recorder.calls == [[1], [2, 3, 4]]


async def test_a_failed_call_fails_each_of_its_callers_and_later_ones_still_run() -> None:
    recorder = Recorder()
    recorder.failures.append(ConnectionError("down"))
    batched = Batched(recorder)

    results = await asyncio.gather(batched.add(1), batched.add(2), return_exceptions=True)
    await batched.add(3)

    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    assert recorder.calls == [[1, 2], [3]]


async def test_a_cancelled_caller_stops_waiting_but_its_item_is_still_in_the_call() -> None:
    recorder = Recorder()
    batched = Batched(recorder)

    impatient = asyncio.create_task(batched.add(1))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await batched.add(2)

    assert recorder.calls == [[1], [2]]


class Answerer:
    """A grouped call that answers each item with its double, or with the failure it was given."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.failing: dict[int, Exception] = {}

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.calls.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        return [self.failing.get(item, item * 2) for item in items]


async def test_grouped_callers_share_calls_and_no_more_than_the_concurrency_run_at_once() -> None:
    answerer = Answerer()
    grouped = GroupedCalls(answerer, concurrency=2, max_items=100)

    answers = await asyncio.gather(*(grouped.call(n) for n in range(10)))

    assert answers == [n * 2 for n in range(10)]
    # The first two start at once, alone; the eight that arrived meanwhile share the next call.
    assert answerer.calls == [[0], [1], list(range(2, 10))]
    assert answerer.most_running == 2


async def test_a_grouped_call_carries_at_most_max_items() -> None:
    answerer = Answerer()
    grouped = GroupedCalls(answerer, concurrency=1, max_items=3)

    await asyncio.gather(*(grouped.call(n) for n in range(7)))

    assert answerer.calls == [[0], [1, 2, 3], [4, 5, 6]]


async def test_each_grouped_caller_gets_its_own_answer_or_its_own_failure() -> None:
    answerer = Answerer()
    answerer.failing[3] = ValueError("three")
    grouped = GroupedCalls(answerer, concurrency=1, max_items=100)

    answers = await asyncio.gather(*(grouped.call(n) for n in range(5)), return_exceptions=True)

    assert answers[:3] == [0, 2, 4]
    assert isinstance(answers[3], ValueError)
    assert answers[4] == 8


async def test_a_grouped_call_that_fails_whole_fails_each_of_its_callers_and_later_ones_run() -> (
    None
):
    calls: list[list[int]] = []

    async def down_once(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("down")
        return items

    grouped = GroupedCalls(down_once, concurrency=1, max_items=100)

    failed = await asyncio.gather(grouped.call(1), return_exceptions=True)
    later = await grouped.call(2)

    assert [type(result) for result in failed] == [ConnectionError]
    assert later == 2
