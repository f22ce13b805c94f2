"""Orders placed at the same time share one statement and one commit.

A durable commit waits for its WAL flush, and each order used to wait for one of its own while
holding a pooled connection: the pool's size times the flush time capped how many orders a
process could accept, with CPU to spare (docs/decisions/0042-group-commit-of-keyed-orders-kept.md).
Now each order is written by the next statement to start, together with every order that
arrived while the earlier ones ran.
"""

import asyncpg

from kit.batching import GroupedCalls
from kit.db import connection
from kit.settings import Settings
from shop.orders import repository as orders_repo
from shop.orders.repository import KeyedOrder

# Statements in flight at once: enough to keep Postgres's WAL flushes back to back, few enough to
# leave most of the pool to the reads every order also makes.
CONCURRENT_WRITES = 3
MAX_ORDERS_PER_WRITE = 64


class OrderGroupCommit:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, *, concurrency: int = CONCURRENT_WRITES
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._calls: GroupedCalls[KeyedOrder, bool] = GroupedCalls(
            self._write, concurrency=concurrency, max_items=MAX_ORDERS_PER_WRITE
        )

    @property
    def waiting(self) -> int:
        """Orders waiting for a statement to start."""
        return self._calls.waiting

    async def write(self, order: KeyedOrder) -> bool:
        """Whether the order was written (committed); False when another request holds its key.

        Raises asyncpg.UniqueViolationError when its key was stored after its plan was read.
        """
        return await self._calls.call(order)

    async def _write(self, orders: list[KeyedOrder]) -> list[bool | Exception]:
        async with connection(self._pool, self._settings.db_pool_acquire_timeout_s) as conn:
            try:
                written = await orders_repo.insert_keyed_with_reservation_jobs(conn, orders)
            except asyncpg.UniqueViolationError:
                if len(orders) == 1:
                    raise
                # One key was stored since its request read it, or came twice in this statement:
                # each order alone, so that only that one fails.
                return [await self._write_alone(conn, order) for order in orders]
        return [order.plan.order_id in written for order in orders]

    @staticmethod
    async def _write_alone(conn: asyncpg.Connection, order: KeyedOrder) -> bool | Exception:
        try:
            written = await orders_repo.insert_keyed_with_reservation_jobs(conn, [order])
        except asyncpg.UniqueViolationError as exc:
            failure: Exception = exc
            return failure
        return order.plan.order_id in written
