"""Work that callers arriving together share: one call for all of them instead of one each."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


class GroupedCalls(Generic[T, R]):
    """Runs `run(items)` for the items of callers that arrive together, several calls at once.

    A caller's item starts a call at once while fewer than `concurrency` calls are running;
    otherwise it waits for the next call to start, when one of them ends, with every item that
    arrived meanwhile (at most `max_items` a call). So an idle system adds no wait, and a busy one
    shares each call among many callers. `run` answers every item, in order, with its result or
    with the exception for that item alone; each caller of `call` gets its own answer, or what the
    whole call raised. A caller that is cancelled stops waiting; its item is still in the call.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | Exception]]],
        *,
        concurrency: int,
        max_items: int,
    ) -> None:
        self._run = run
        self._concurrency = concurrency
        self._max_items = max_items
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Items waiting for a call to start."""
        return len(self._waiting)

    async def call(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieve)
        self._waiting.append((item, answer))
        if len(self._running) < self._concurrency:
            self._start()
        return await asyncio.shield(answer)

    def _start(self) -> None:
        batch = self._waiting[: self._max_items]
        del self._waiting[: self._max_items]
        task = asyncio.create_task(self._call(batch))
        self._running.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        while self._waiting and len(self._running) < self._concurrency:
            self._start()

    async def _call(self, batch: list[tuple[T, "asyncio.Future[R]"]]) -> None:
        try:
            answers = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), result in zip(batch, answers, strict=True):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)
