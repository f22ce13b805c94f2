from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shop.jobs.names import JobName
from shop.models import WebhookDeliveryStatus, WebhookEventType

_ENDPOINT_COLUMNS = (
    "id, client_id, url, events, secret, previous_secret, previous_secret_expires_at,"
    " created_at, disabled_at, disabled_reason"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    client_id: int
    url: str
    events: list[str]
    # Never in a repr, so never in a log line or a traceback's locals.
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


def _public_id_sql() -> str:
    return "'evt_' || replace(gen_random_uuid()::text, '-', '')"


# Fans the events of `new_event` (id, client_id, order_id, type, request_id) out to the
# client's enabled endpoints that take their type: a delivery each, and its first try's job in
# the outbox. A fragment of the statement that writes the events, so the change, its events and
# their deliveries commit together or not at all.
FAN_OUT = f"""
new_deliveries AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
    SELECT new_event.id, w.id
    FROM new_event
    JOIN webhook_endpoints AS w
      ON w.client_id = new_event.client_id AND new_event.type = any(w.events)
         AND w.disabled_at IS NULL
    RETURNING id, event_id
), new_delivery_jobs AS (
    INSERT INTO outbox (job_id, function, args, order_id, request_id)
    SELECT '{JobName.DELIVER_WEBHOOK.value}:' || d.id || ':0', '{JobName.DELIVER_WEBHOOK.value}',
           jsonb_build_array(d.id, 0), new_event.order_id, new_event.request_id
    FROM new_deliveries AS d JOIN new_event ON new_event.id = d.event_id
)"""


# The order.created event of each order `new_order` (id, created_at) inserted, and its deliveries:
# CTEs of the statement that inserts the order (shop.orders.repository), whose parameters the
# order's JSON is built from ($1 client, $2 email, $3 name, $4 total, $5 currency, $6 request
# id, $7..$9 the lines), so the event costs the order no round trip. The shape is the one GET
# /v1/orders/{id} answers for a pending order; render_order gives it the API's exact form.
ORDER_CREATED = f"""new_event AS (
    INSERT INTO webhook_events (public_id, client_id, order_id, type, request_id, data)
    SELECT {_public_id_sql()}, $1, new_order.id, '{WebhookEventType.ORDER_CREATED.value}', $6,
           jsonb_build_object(
               'id', new_order.id, 'status', 'pending',
               'customer', jsonb_build_object('email', $2::text, 'name', $3::text),
               'items', (SELECT jsonb_agg(jsonb_build_object(
                                 'product_id', line.product_id, 'quantity', line.quantity,
                                 'unit_price_cents', line.unit_price_cents) ORDER BY line.n)
                         FROM unnest($7::bigint[], $8::int[], $9::bigint[])
                              WITH ORDINALITY AS line(product_id, quantity, unit_price_cents, n)),
               'total_cents', $4::bigint, 'currency', $5::text, 'created_at', new_order.created_at,
               'confirmed_at', null, 'rejected_at', null, 'cancelled_at', null,
               'rejection_reason', null, 'confirmation_sent_at', null)
    FROM new_order
    RETURNING id, client_id, order_id, type, request_id
), {FAN_OUT}"""


# The order.created events of the orders an Idempotency-Key statement inserts (`locked`, one row
# per order written: shop.orders.repository), and their deliveries. Their data is the response
# each request stores and answers, which is the order as GET /v1/orders/{id} answers it.
KEYED_ORDERS_CREATED = f"""new_event AS (
    INSERT INTO webhook_events (public_id, client_id, order_id, type, request_id, data)
    SELECT {_public_id_sql()}, locked.client_id, locked.order_id,
           '{WebhookEventType.ORDER_CREATED.value}', locked.request_id,
           convert_from(locked.response_body, 'UTF8')::jsonb
    FROM locked
    RETURNING id, client_id, order_id, type, request_id
), {FAN_OUT}"""


# The order as GET /v1/orders/{id} shows it (shop.orders.repository), built by Postgres from the
# rows as this transaction sees them; shop.webhooks.service.render_order gives it the API's form.
_ORDER_JSON = """jsonb_build_object(
    'id', o.id, 'status', o.status,
    'customer', jsonb_build_object('email', o.customer_email, 'name', o.customer_name),
    'items', coalesce(
        (SELECT jsonb_agg(jsonb_build_object('product_id', l.product_id, 'quantity', l.quantity,
                                             'unit_price_cents', l.unit_price_cents)
                          ORDER BY l.position)
         FROM order_lines AS l WHERE l.order_id = o.id), '[]'::jsonb),
    'total_cents', o.total_cents, 'currency', o.currency, 'created_at', o.created_at,
    'confirmed_at', o.confirmed_at, 'rejected_at', o.rejected_at, 'cancelled_at', o.cancelled_at,
    'rejection_reason', o.rejection_reason, 'confirmation_sent_at', o.confirmation_sent_at)"""

_INSERT_ORDER_EVENTS = f"""
WITH new_event AS (
    INSERT INTO webhook_events (public_id, client_id, order_id, type, request_id, data)
    SELECT {_public_id_sql()}, o.client_id, o.id, e.type, o.request_id, {_ORDER_JSON}
    FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS e(order_id, type, position)
    JOIN orders AS o ON o.id = e.order_id
    ORDER BY e.position
    RETURNING id, client_id, order_id, type, request_id
), {FAN_OUT}
SELECT count(*) FROM new_deliveries
"""


async def insert_order_events(
    conn: asyncpg.Connection, event_type_by_order: Mapping[int, WebhookEventType]
) -> int:
    """Writes an event of each order's type, with the order as this transaction sees it, and
    its deliveries; returns how many deliveries were queued (their jobs are in the outbox).

    One statement for any number of orders. Call in the transaction that changed the orders,
    after the change: the event then exists if and only if the change commits.
    """
    if not event_type_by_order:
        return 0
    count: int = await conn.fetchval(
        _INSERT_ORDER_EVENTS,
        list(event_type_by_order),
        [event_type.value for event_type in event_type_by_order.values()],
    )
    return count


async def insert_endpoint(
    conn: asyncpg.Connection, *, client_id: int, url: str, events: Sequence[str], secret: str
) -> Endpoint:
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints (client_id, url, events, secret)"
        f" VALUES ($1, $2, $3, $4) RETURNING {_ENDPOINT_COLUMNS}",
        client_id,
        url,
        list(events),
        secret,
    )
    assert row is not None
    return Endpoint(**row)


async def list_endpoints(conn: asyncpg.Connection, client_id: int) -> list[Endpoint]:
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE client_id = $1 ORDER BY id",
        client_id,
    )
    return [Endpoint(**row) for row in rows]


async def get_endpoint(
    conn: asyncpg.Connection, endpoint_id: int, client_id: int | None = None
) -> Endpoint | None:
    """The endpoint; with `client_id`, only if it is that client's."""
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
        " WHERE id = $1 AND ($2::bigint IS NULL OR client_id = $2)",
        endpoint_id,
        client_id,
    )
    return None if row is None else Endpoint(**row)


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: int, client_id: int) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND client_id = $2 RETURNING id",
        endpoint_id,
        client_id,
    )
    return deleted is not None


async def enable_endpoint(
    conn: asyncpg.Connection, endpoint_id: int, client_id: int
) -> Endpoint | None:
    """Clears the endpoint's disabling; None when the client has no such endpoint."""
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL"
        f" WHERE id = $1 AND client_id = $2 RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        client_id,
    )
    return None if row is None else Endpoint(**row)


async def rotate_secret(
    conn: asyncpg.Connection, endpoint_id: int, client_id: int, secret: str, overlap_s: float
) -> datetime | None:
    """Makes `secret` the endpoint's; the one it replaces signs too for `overlap_s` more.
    Returns when that ends; None when the client has no such endpoint."""
    expires_at: datetime | None = await conn.fetchval(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,"
        " previous_secret_expires_at = now() + make_interval(secs => $4)"
        " WHERE id = $1 AND client_id = $2 RETURNING previous_secret_expires_at",
        endpoint_id,
        client_id,
        secret,
        overlap_s,
    )
    return expires_at


@dataclass(frozen=True, slots=True)
class DeliveryWork:
    """A delivery and what its next try needs, as read when the try starts."""

    id: int
    status: WebhookDeliveryStatus
    attempts: int
    endpoint_id: int
    event_public_id: str
    event_type: str
    event_data: dict[str, Any]
    event_created_at: datetime
    # None when the endpoint was deleted.
    url: str | None
    # The secrets that sign now: the current one, and the previous one until it expires.
    secrets: list[str] = field(repr=False)
    disabled: bool
    now: datetime


_DELIVERY_WORKS = """
SELECT d.id, d.status, d.attempts, d.endpoint_id, e.public_id, e.type, e.data, e.created_at,
       w.url, w.secret, w.disabled_at IS NOT NULL AS disabled, now() AS now,
       CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous
FROM webhook_deliveries AS d
JOIN webhook_events AS e ON e.id = d.event_id
LEFT JOIN webhook_endpoints AS w ON w.id = d.endpoint_id
WHERE d.id = any($1::bigint[])
ORDER BY d.id
"""


async def get_delivery_works(
    conn: asyncpg.Connection, delivery_ids: Sequence[int]
) -> list[DeliveryWork]:
    """The deliveries that exist of `delivery_ids`, in id order (so in their events' order)."""
    rows = await conn.fetch(_DELIVERY_WORKS, list(delivery_ids))
    return [
        DeliveryWork(
            id=row["id"],
            status=WebhookDeliveryStatus(row["status"]),
            attempts=row["attempts"],
            endpoint_id=row["endpoint_id"],
            event_public_id=row["public_id"],
            event_type=row["type"],
            event_data=row["data"],
            event_created_at=row["created_at"],
            url=row["url"],
            secrets=[s for s in (row["secret"], row["previous"]) if s is not None],
            disabled=bool(row["disabled"]),
            now=row["now"],
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str | None


# Records try `$2` of a delivery and its outcome, unless another run recorded that try already
# (the same job run twice: the count moved on, and this changes nothing). A delivery that dies
# disables its endpoint when nothing reached the endpoint since the dead event happened: it has
# then failed for WEBHOOK_MAX_AGE_S at least.
_RECORD_ATTEMPT = """
WITH updated AS (
    UPDATE webhook_deliveries SET attempts = attempts + 1, status = $3::varchar,
        next_attempt_at = $4, finished_at = CASE WHEN $3::varchar <> 'pending' THEN now() END
    WHERE id = $1 AND attempts = $2 AND status = 'pending'
    RETURNING id, endpoint_id
), attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, latency_ms, error,
                                  response_body, next_attempt_at)
    SELECT updated.id, $5, $6, $7, $8, $9, $4 FROM updated WHERE $5::timestamptz IS NOT NULL
), disabled AS (
    UPDATE webhook_endpoints AS w SET disabled_at = now(), disabled_reason = $10
    FROM updated
    WHERE w.id = updated.endpoint_id AND $3::varchar = 'dead' AND $10::text IS NOT NULL
      AND w.disabled_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries AS ok
          WHERE ok.endpoint_id = w.id AND ok.status = 'delivered' AND ok.finished_at > $11)
)
SELECT count(*) FROM updated
"""


async def record_attempt(
    conn: asyncpg.Connection,
    work: DeliveryWork,
    *,
    status: WebhookDeliveryStatus,
    next_attempt_at: datetime | None,
    attempt: AttemptRecord | None,
    disable_reason: str | None = None,
) -> bool:
    """Whether this run recorded the try (False: another run of it did). Without `attempt`,
    the delivery is finished without a request (its endpoint is gone or disabled)."""
    recorded: int = await conn.fetchval(
        _RECORD_ATTEMPT,
        work.id,
        work.attempts,
        status.value,
        next_attempt_at,
        None if attempt is None else attempt.attempted_at,
        None if attempt is None else attempt.status_code,
        None if attempt is None else attempt.latency_ms,
        None if attempt is None else attempt.error,
        None if attempt is None else attempt.response_body,
        disable_reason,
        work.event_created_at,
    )
    return recorded > 0


@dataclass(frozen=True, slots=True)
class DueDelivery:
    id: int
    attempts: int
    request_id: str | None


async def list_overdue(
    conn: asyncpg.Connection, overdue_s: float, limit: int, *, dead_job_prefix: str
) -> list[DueDelivery]:
    """Pending deliveries due at least `overdue_s` ago: their job was lost (or never queued).
    Tries recorded as dead jobs (`dead_job_prefix` + id + ':' + try) are left to operators."""
    rows = await conn.fetch(
        "SELECT d.id, d.attempts, e.request_id FROM webhook_deliveries AS d"
        " JOIN webhook_events AS e ON e.id = d.event_id"
        " WHERE d.status = 'pending' AND d.next_attempt_at < now() - make_interval(secs => $1)"
        " AND NOT EXISTS (SELECT 1 FROM dead_jobs AS j"
        "   WHERE j.job_id = $3 || d.id || ':' || d.attempts AND j.redriven_at IS NULL)"
        " ORDER BY d.next_attempt_at LIMIT $2",
        overdue_s,
        limit,
        dead_job_prefix,
    )
    return [DueDelivery(**row) for row in rows]


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    delivery_id: int
    event_id: str
    event_type: str
    delivery_status: str
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    next_attempt_at: datetime | None


async def list_attempts(
    conn: asyncpg.Connection, endpoint_id: int, *, before_id: int | None, limit: int
) -> list[Attempt]:
    """The endpoint's attempts, newest first."""
    rows = await conn.fetch(
        "SELECT a.id, a.delivery_id, e.public_id AS event_id, e.type AS event_type,"
        " d.status AS delivery_status, a.attempted_at, a.status_code, a.latency_ms, a.error,"
        " a.next_attempt_at"
        " FROM webhook_deliveries AS d"
        " JOIN webhook_attempts AS a ON a.delivery_id = d.id"
        " JOIN webhook_events AS e ON e.id = d.event_id"
        " WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR a.id < $2)"
        " ORDER BY a.id DESC LIMIT $3",
        endpoint_id,
        before_id,
        limit,
    )
    return [Attempt(**row) for row in rows]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    public_id: str
    client_id: int
    type: str
    data: dict[str, Any]
    created_at: datetime


_EVENT_COLUMNS = "id, public_id, client_id, type, data, created_at"


async def get_event(
    conn: asyncpg.Connection, public_id: str, client_id: int | None = None
) -> StoredEvent | None:
    """The event; with `client_id`, only if it is that client's."""
    row = await conn.fetchrow(
        f"SELECT {_EVENT_COLUMNS} FROM webhook_events"
        " WHERE public_id = $1 AND ($2::bigint IS NULL OR client_id = $2)",
        public_id,
        client_id,
    )
    return None if row is None else StoredEvent(**row)


async def list_events(
    conn: asyncpg.Connection,
    client_id: int,
    *,
    event_type: str | None,
    after_id: int | None,
    limit: int,
) -> list[StoredEvent]:
    """The client's events, oldest first, after the event `after_id` (the (client_id, id)
    index serves every variant)."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM webhook_events"
        " WHERE client_id = $1 AND ($2::text IS NULL OR type = $2)"
        " AND ($3::bigint IS NULL OR id > $3)"
        " ORDER BY id LIMIT $4",
        client_id,
        event_type,
        after_id,
        limit,
    )
    return [StoredEvent(**row) for row in rows]


_REDELIVER = f"""
WITH new_event AS (
    SELECT id, client_id, order_id, type, request_id FROM webhook_events WHERE id = $1
), {FAN_OUT}
SELECT count(*) FROM new_deliveries
"""


async def redeliver(conn: asyncpg.Connection, event_id: int) -> int:
    """New deliveries of the event to its client's endpoints that take its type now, their
    first tries in the outbox; how many."""
    count: int = await conn.fetchval(_REDELIVER, event_id)
    return count


async def purge_events(conn: asyncpg.Connection, older_than_s: float, limit: int) -> int:
    """Deletes up to `limit` events older than `older_than_s`, with their deliveries and
    attempts (cascading); how many events. The range scan is on `ix_webhook_events_created_at`;
    an event someone holds is skipped, not waited for."""
    deleted: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM webhook_events WHERE id = any(ARRAY("
        " SELECT id FROM webhook_events WHERE created_at < now() - make_interval(secs => $1)"
        " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING 1)"
        " SELECT count(*) FROM gone",
        older_than_s,
        limit,
    )
    return deleted


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    id: int
    client_id: int
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    pending: int
    delivered: int
    dead: int


async def list_all_endpoints(
    conn: asyncpg.Connection, client_id: int | None, limit: int
) -> list[EndpointSummary]:
    """Every client's endpoints (or one client's), with their deliveries counted by state."""
    rows = await conn.fetch(
        "SELECT w.id, w.client_id, w.url, w.events, w.created_at, w.disabled_at,"
        " w.disabled_reason,"
        " count(*) FILTER (WHERE d.status = 'pending') AS pending,"
        " count(*) FILTER (WHERE d.status = 'delivered') AS delivered,"
        " count(*) FILTER (WHERE d.status = 'dead') AS dead"
        " FROM webhook_endpoints AS w LEFT JOIN webhook_deliveries AS d ON d.endpoint_id = w.id"
        " WHERE $1::bigint IS NULL OR w.client_id = $1"
        " GROUP BY w.id ORDER BY w.id LIMIT $2",
        client_id,
        limit,
    )
    return [EndpointSummary(**row) for row in rows]
