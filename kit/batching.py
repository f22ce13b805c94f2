"""Work that callers arriving together share: one call for all of them instead of one each."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Batched(Generic[T]):
    """Runs `run(items)` for the items of callers that arrive while an earlier call is running.

    One call is in flight at a time; items added meanwhile go together in the next one. Each
    caller of `add` returns once the call that included its item has finished, or raises what
    that call raised, so a caller knows as much as it would had it made the call alone. A caller
    that is cancelled stops waiting; its item is still in the call.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[None]]) -> None:
        self._run = run
        self._items: list[T] = []
        # Completes when the call with the items now collecting has; None while none collect.
        self._collecting: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        self._items.append(item)
        if self._collecting is None:
            self._collecting = asyncio.get_running_loop().create_future()
            # Retrieved even when every caller of the batch was cancelled: no "never retrieved".
            self._collecting.add_done_callback(_retrieve)
        finished = self._collecting
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_batches())
        await asyncio.shield(finished)

    async def _run_batches(self) -> None:
        running: asyncio.Future[None] | None = None
        try:
            while self._collecting is not None:
                running, self._collecting = self._collecting, None
                items, self._items = self._items, []
                try:
                    await self._run(items)
                except Exception as exc:
                    running.set_exception(exc)
                else:
                    running.set_result(None)
        finally:
            self._runner = None
            # Cancelled (a shutdown): nobody waits for ever for a call that will not happen.
            for left in (running, self._collecting):
                if left is not None and not left.done():
                    left.cancel()
            self._collecting, self._items = None, []


def _retrieve(finished: asyncio.Future[Any]) -> None:
    if not finished.cancelled():
        finished.exception()
