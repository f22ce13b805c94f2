"""The confirmation email: sent once per confirmed order, and recorded when sent."""

import asyncio
import secrets
from collections.abc import Sequence

import asyncpg
import structlog
from redis.asyncio import Redis

from kit import tracing
from kit.db import connection
from kit.errors import PermanentJobError
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.fulfilment.mail import Mailer, confirmation_message
from shop.jobs.keys import confirmation_claim_key
from shop.jobs.names import JobName, job_id_prefix
from shop.jobs.outcomes import OrderOutcomes
from shop.models import OrderStatus
from shop.orders import repository as orders_repo
from shop.orders.schemas import OrderPublic

log = structlog.get_logger(__name__)


# Claims each order's confirmation for a claimant: taken if free or the claimant's already (a job's
# next try takes up its own claims). KEYS: the orders' claim keys; ARGV: the claimant, the claims'
# lifetime in ms. Returns the positions (from 1) of the keys taken.
_CLAIM = """
local taken = {}
for i, key in ipairs(KEYS) do
    local holder = redis.call('GET', key)
    if not holder or holder == ARGV[1] then
        redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
        taken[#taken + 1] = i
    end
end
return taken
"""
# Lets go of the claimant's claims among KEYS, leaving any another claimant took meanwhile.
_RELEASE = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
    end
end
return 0
"""
# Longer than any try of a job can run: the wrapper gives up at JOB_TIMEOUT_S, ARQ 4 s later.
_CLAIM_MARGIN_S = 5


async def send_confirmations(
    pool: asyncpg.Pool,
    settings: Settings,
    mailer: Mailer,
    redis: Redis,
    order_ids: Sequence[int],
    *,
    claimant: str | None = None,
    skip_dead: bool = False,
) -> OrderOutcomes[bool]:
    """Sends each order's confirmation unless it was sent already or the order is no longer
    confirmed; returns, order by order, whether an email went out, or what failed it.

    The emails go out together, as many at a time as the mailer has connections, and are
    recorded together once sent, in one statement. An order's email is one job's at a time: the
    job (`claimant`, its ARQ job id) claims the order in Redis before it reads whether the email
    is due and lets go once the send is recorded, so that two jobs that both carry the order (its
    outbox row handed over again in another batch) never both send it; an order another job has
    claimed is left to that job. A claim expires after the longest a try can run, should its
    worker die holding it. No database connection is held while the emails go out. With
    `skip_dead`, an order whose confirmation job is recorded as dead is left too (a batch
    retried for its other orders). If the process dies after the SMTP server accepted messages
    and before their record, the job runs again and those emails are sent twice (up to a batch
    of them); the stable Message-ID lets mail systems recognise the copies.
    """
    outcomes: OrderOutcomes[bool] = OrderOutcomes()
    claimant = claimant or secrets.token_hex(8)
    keys = [confirmation_claim_key(settings.queue_name, order_id) for order_id in order_ids]
    lifetime_ms = (settings.job_timeout_s + _CLAIM_MARGIN_S) * 1000
    taken = await redis.register_script(_CLAIM)(keys=keys, args=[claimant, lifetime_ms])
    claimed = [order_ids[position - 1] for position in taken]
    try:
        prefix = job_id_prefix(JobName.SEND_CONFIRMATION) if skip_dead else None
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            orders = await orders_repo.get_many(conn, claimed, dead_job_prefix=prefix)
        held = set(claimed)
        due: list[OrderPublic] = []
        for order_id in order_ids:
            if order_id not in held:
                outcomes.done[order_id] = False  # another job has it in hand
            elif order_id not in orders:
                outcomes.failed[order_id] = _missing(order_id)
            else:
                order, dead = orders[order_id]
                if (
                    dead
                    or order.status is not OrderStatus.CONFIRMED
                    or order.confirmation_sent_at is not None
                ):
                    outcomes.done[order_id] = False
                else:
                    due.append(order)
        if due:
            await _send(pool, settings, mailer, due, outcomes)
    finally:
        await _release(redis, [keys[position - 1] for position in taken], claimant)
    return outcomes


async def _send(
    pool: asyncpg.Pool,
    settings: Settings,
    mailer: Mailer,
    orders: list[OrderPublic],
    outcomes: OrderOutcomes[bool],
) -> None:
    """Sends, then records the sent in one statement; a failed send fails only its order."""
    sent: list[int] = []

    async def send_one(order: OrderPublic) -> None:
        try:
            with tracing.client_span(
                "smtp send",
                order_id=order.id,
                **{"server.address": settings.smtp_host, "server.port": settings.smtp_port},
            ):
                await mailer.send(confirmation_message(order, settings))
        except Exception as exc:
            outcomes.failed[order.id] = exc
        else:
            sent.append(order.id)

    try:
        async with asyncio.TaskGroup() as sending:
            for order in orders:
                sending.create_task(send_one(order))
    finally:
        # Also when the sends are cut short (the job's timeout), so that its retry does not
        # send these again.
        if sent:
            async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
                await orders_repo.mark_confirmations_sent(conn, sent)
    outcomes.done.update(dict.fromkeys(sent, True))


async def _release(redis: Redis, keys: list[str], claimant: str) -> None:
    """Lets go of the claims; if Redis cannot be told, they expire (the sends are recorded)."""
    if not keys:
        return
    try:
        await redis.register_script(_RELEASE)(keys=keys, args=[claimant])
    except REDIS_UNAVAILABLE_ERRORS as exc:
        log.warning("confirmation_claims_not_released", orders=len(keys), error=repr(exc))


def _missing(order_id: int) -> PermanentJobError:
    """The failure of an order that does not exist, raised here so that it carries a traceback."""
    try:
        raise PermanentJobError(f"order {order_id} does not exist")
    except PermanentJobError as exc:
        return exc
