"""Callers that arrive together share one call, and each learns how that call went."""

import asyncio

import pytest

from kit.batching import Batched


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
