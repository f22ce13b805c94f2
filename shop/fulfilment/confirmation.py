"""The confirmation email: sent once per confirmed order, and recorded when sent."""

import asyncpg

from kit.batching import Batched
from kit.db import connection
from kit.errors import PermanentJobError
from kit.settings import Settings
from shop.fulfilment.mail import Mailer, confirmation_message
from shop.models import OrderStatus
from shop.orders import repository as orders_repo


class SentConfirmations:
    """Notes sent confirmations in Postgres: one statement and one commit for those sent together.

    Concurrent confirmation jobs finish their sends close together; each waited for a commit of
    its own, and a commit is a WAL flush in Postgres on the same two cores
    (docs/decisions/0024-confirmations-recorded-in-one-statement.md).
    """

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._batch: Batched[int] = Batched(self._note)

    async def note(self, order_id: int) -> None:
        """Returns once the order is noted as confirmed by email (committed)."""
        await self._batch.add(order_id)

    async def _note(self, order_ids: list[int]) -> None:
        async with connection(self._pool, self._settings.db_pool_acquire_timeout_s) as conn:
            await orders_repo.mark_confirmations_sent(conn, order_ids)


async def send_confirmation(
    pool: asyncpg.Pool,
    settings: Settings,
    mailer: Mailer,
    sent: SentConfirmations,
    order_id: int,
) -> bool:
    """Sends the confirmation unless it was sent already or the order is no longer confirmed.

    Returns whether an email went out. If the process dies after the SMTP server accepted the
    message and before the record below, the job runs again and the email is sent twice; the
    stable Message-ID lets mail systems recognise the copy.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        order = await orders_repo.get(conn, order_id)
    if order is None:
        raise PermanentJobError(f"order {order_id} does not exist")
    if order.status is not OrderStatus.CONFIRMED or order.confirmation_sent_at is not None:
        return False
    await mailer.send(confirmation_message(order, settings))
    await sent.note(order_id)
    return True
