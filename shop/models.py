"""The schema of record. Alembic migrations are written against these tables.

Hot paths query them through asyncpg with explicit column lists (see the repositories); these
SQLAlchemy definitions exist so that the schema is declared, reviewed and migrated in one place.
"""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class ConsoleRole(StrEnum):
    """What an admin key may do in the operator console: look, or also act."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the whole key: keys are 256-bit random tokens, so a fast hash is safe here.
    key_hash: Mapped[bytes] = mapped_column(unique=True)
    # The first characters of the key, so that operators can tell keys apart without the secret.
    key_prefix: Mapped[str] = mapped_column(String(16))
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What an admin key may do in the operator console (ConsoleRole); None for clients' keys.
    console_role: Mapped[str | None] = mapped_column(String(16))


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'rejected', 'cancelled')", name="status_known"
        ),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        Index("ix_orders_client_id_id", "client_id", "id"),
        Index("ix_orders_client_id_status_id", "client_id", "status", "id"),
        # The few orders whose jobs are not done: what the outbox relay re-delivers from.
        Index(
            "ix_orders_unfinished",
            "id",
            postgresql_where=text(
                "status = 'pending' OR (status = 'confirmed' AND confirmation_sent_at IS NULL)"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign keys to clients or products: each would lock the referenced row until the order
    # commits (docs/decisions/0029-no-foreign-keys-from-orders.md).
    client_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), server_default=OrderStatus.PENDING.value)
    customer_email: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str] = mapped_column(String(200))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # The request id of the API call that placed the order, carried into its jobs' logs.
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    # Not a foreign key, as orders.client_id is not.
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Lines are returned in the order the client sent them.
    position: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)


class OutboxEntry(Base):
    """A job that a committed transaction needs, waiting to be handed to the queue."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("delivered_at IS NULL"),
        ),
        # The purge's range scan (docs/decisions/0034-bounded-tables.md). Partial, so that an
        # insert does not write it; a claim rewrites every index of its row anyway (the update
        # of delivered_at is not HOT), this one included.
        Index(
            "ix_outbox_delivered_at",
            "delivered_at",
            postgresql_where=text("delivered_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Deterministic (e.g. "reserve_inventory:42"), so that a re-delivery is deduplicated by ARQ.
    job_id: Mapped[str] = mapped_column(String(200), unique=True)
    function: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[object]] = mapped_column(JSONB)
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The W3C traceparent of the span that caused the job (the order's request), when tracing is
    # on: the relay hands it to the job, whose span continues the order's trace (docs/tracing.md).
    traceparent: Mapped[str | None] = mapped_column(String(55))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivery_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadJob(Base):
    """A job that will not be retried again: tries exhausted, or failed permanently.

    ARQ keeps no record of failed jobs beyond `keep_result`; this table keeps every one until an
    operator retries it, so nothing fails silently. `redriven_*` say when and as which job.
    """

    __tablename__ = "dead_jobs"
    __table_args__ = (
        Index("ix_dead_jobs_pending", "id", postgresql_where=text("redriven_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(200), index=True)
    function: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[object]] = mapped_column(JSONB)
    kwargs: Mapped[dict[str, object]] = mapped_column(JSONB)
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    tries: Mapped[int] = mapped_column(Integer)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    redriven_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redriven_job_id: Mapped[str | None] = mapped_column(String(200))


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the response its first request got, replayed to retries.

    Written in the same transaction as the effect it guards (the order, the cancellation), so a
    key never exists without its effect nor an effect without its key.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    # Keys are scoped to the client: two clients may send the same key.
    # Not a foreign key, as orders.client_id is not.
    client_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Method and path of the first request; a key reused on another endpoint is refused.
    endpoint: Mapped[str] = mapped_column(String(300))
    # SHA-256 of the request's canonical form; a key reused with another body is refused.
    request_hash: Mapped[bytes]
    response_status: Mapped[int] = mapped_column(Integer)
    # The exact bytes of the first response, so that a replay is byte-for-byte the same.
    response_body: Mapped[bytes]
    response_location: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookEventType(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_CONFIRMED = "order.confirmed"
    ORDER_REJECTED = "order.rejected"
    ORDER_CANCELLED = "order.cancelled"


# The event that announces an order reaching each state.
ORDER_EVENT_BY_STATUS = {
    OrderStatus.PENDING: WebhookEventType.ORDER_CREATED,
    OrderStatus.CONFIRMED: WebhookEventType.ORDER_CONFIRMED,
    OrderStatus.REJECTED: WebhookEventType.ORDER_REJECTED,
    OrderStatus.CANCELLED: WebhookEventType.ORDER_CANCELLED,
}


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Not delivered within WEBHOOK_MAX_AGE_S of its event: not retried again.
    DEAD = "dead"


class WebhookEndpoint(Base):
    """A client's URL that hears about its orders (docs/webhooks.md)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_client_id_id", "client_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Not a foreign key, as orders.client_id is not.
    client_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    # The Standard Webhooks symmetric secret (`whsec_...`), as the client was shown it
    # (docs/decisions/0030-webhook-secrets.md).
    secret: Mapped[str] = mapped_column(String(100))
    # The secret before the last rotation, which signs too until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set when deliveries to it failed for longer than WEBHOOK_MAX_AGE_S; it gets no new ones.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookEvent(Base):
    """Something that happened to an order, written in the transaction that made it happen."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_client_id_id", "client_id", "id"),
        Index("ix_webhook_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # What clients see (`evt_...`, the `webhook-id` of every delivery); random, so that it says
    # nothing about how many events other clients have.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    client_id: Mapped[int] = mapped_column(BigInteger)
    # Not a foreign key, as order_lines.product_id is not: an event only names its order.
    order_id: Mapped[int] = mapped_column(BigInteger, index=True)
    type: Mapped[str] = mapped_column(String(32))
    # The request id of the API call that placed the order, carried into the deliveries' logs.
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The order as GET /v1/orders/{id} returned it when the event happened.
    data: Mapped[dict[str, object]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """One event on its way to one endpoint; each try at it is a WebhookAttempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_known"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # The deliveries the sweeper looks at: those still to be tried.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    # Not a foreign key: each delivery would lock its endpoint's row (KEY SHARE) until the order
    # that made it commits, one row for every order of a storefront (decision 0014).
    endpoint_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(
        String(16), server_default=WebhookDeliveryStatus.PENDING.value
    )
    # Tries finished so far; try n runs as job `deliver_webhook:<id>:<n>`.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One HTTP request of a delivery, and what came of it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # None when no answer came (refused, timed out, an address not allowed).
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The first few KiB of the answer.
    response_body: Mapped[str | None] = mapped_column(Text)
    # When the delivery is tried again; None once it is delivered or dead.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsoleAuditEntry(Base):
    """One action taken in the operator console: who, what, on what, when, and how it ended."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The admin client who acted, by id and by its name then (a client can be renamed or revoked).
    client_id: Mapped[int | None] = mapped_column(BigInteger)
    client_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    # ok, refused (role, CSRF) or failed (the operation raised)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
