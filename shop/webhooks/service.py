"""Registering, listing, rotating and deleting webhook endpoints; the log of their deliveries.

What an endpoint may be sent is in shop.webhooks.addresses, how it is sent in
shop.webhooks.delivery; events are written by the changes they report (insert_order_events).
"""

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from kit.db import connection
from kit.errors import InvalidRequest, NotFound
from kit.pagination import decode_cursor, encode_cursor
from kit.purge import purge_in_batches
from kit.settings import Settings
from shop.clients.auth import Client
from shop.models import WebhookDeliveryStatus, WebhookEventType
from shop.orders.schemas import OrderPublic
from shop.webhooks import addresses, signing
from shop.webhooks import repository as webhooks_repo
from shop.webhooks.repository import Endpoint
from shop.webhooks.schemas import (
    WebhookAttemptPage,
    WebhookAttemptPublic,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointPublic,
    WebhookEvent,
    WebhookEventPage,
    WebhookRedelivery,
    WebhookSecretRotated,
)

log = structlog.get_logger(__name__)

# How long the secret a rotation replaced still signs deliveries.
ROTATION_OVERLAP_S = 24 * 3600


def _public(endpoint: Endpoint) -> WebhookEndpointPublic:
    return WebhookEndpointPublic(
        id=endpoint.id,
        url=endpoint.url,
        events=[WebhookEventType(event) for event in endpoint.events],
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
    )


async def check_url(url: str, settings: Settings) -> None:
    """InvalidRequest (422) unless webhooks may be sent to `url` (shop.webhooks.addresses)."""
    try:
        await addresses.resolve(url, allow_private=settings.webhook_allow_private_networks)
    except addresses.DisallowedUrl as exc:
        raise InvalidRequest(
            f"Webhooks cannot be sent to this URL: {exc}.",
            errors=[{"loc": ["body", "url"], "msg": str(exc), "type": "url_not_allowed"}],
        ) from None


async def create_endpoint(
    pool: asyncpg.Pool, settings: Settings, client: Client, body: WebhookEndpointCreate
) -> WebhookEndpointCreated:
    await check_url(body.url, settings)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        endpoint = await webhooks_repo.insert_endpoint(
            conn,
            client_id=client.id,
            url=body.url,
            events=[event.value for event in body.events],
            secret=signing.generate_secret(),
        )
    log.info("webhook_endpoint_created", endpoint_id=endpoint.id, url=endpoint.url)
    return WebhookEndpointCreated(
        id=endpoint.id,
        url=endpoint.url,
        events=body.events,
        secret=endpoint.secret,
        created_at=endpoint.created_at,
    )


async def list_endpoints(
    pool: asyncpg.Pool, settings: Settings, client: Client
) -> WebhookEndpointList:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        endpoints = await webhooks_repo.list_endpoints(conn, client.id)
    return WebhookEndpointList(data=[_public(endpoint) for endpoint in endpoints])


def _not_found(endpoint_id: int) -> NotFound:
    return NotFound(f"There is no webhook endpoint {endpoint_id}.")


async def get_endpoint(
    pool: asyncpg.Pool, settings: Settings, client: Client, endpoint_id: int
) -> WebhookEndpointPublic:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        endpoint = await webhooks_repo.get_endpoint(conn, endpoint_id, client.id)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return _public(endpoint)


async def delete_endpoint(
    pool: asyncpg.Pool, settings: Settings, client: Client, endpoint_id: int
) -> None:
    """Deletes the endpoint; deliveries to it still pending are dropped when their turn comes."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        deleted = await webhooks_repo.delete_endpoint(conn, endpoint_id, client.id)
    if not deleted:
        raise _not_found(endpoint_id)
    log.info("webhook_endpoint_deleted", endpoint_id=endpoint_id)


async def enable_endpoint(
    pool: asyncpg.Pool, settings: Settings, client: Client, endpoint_id: int
) -> WebhookEndpointPublic:
    """Sends the endpoint events again after it was disabled. Its URL is checked as at
    registration first; events written while it was disabled are not sent to it (GET /v1/events
    has them)."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        endpoint = await webhooks_repo.get_endpoint(conn, endpoint_id, client.id)
        if endpoint is None:
            raise _not_found(endpoint_id)
        await check_url(endpoint.url, settings)
        enabled = await webhooks_repo.enable_endpoint(conn, endpoint_id, client.id)
    if enabled is None:
        raise _not_found(endpoint_id)
    log.info("webhook_endpoint_enabled", endpoint_id=endpoint_id)
    return _public(enabled)


async def rotate_secret(
    pool: asyncpg.Pool, settings: Settings, client: Client, endpoint_id: int
) -> WebhookSecretRotated:
    secret = signing.generate_secret()
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        expires_at = await webhooks_repo.rotate_secret(
            conn, endpoint_id, client.id, secret, ROTATION_OVERLAP_S
        )
    if expires_at is None:
        raise _not_found(endpoint_id)
    log.info("webhook_secret_rotated", endpoint_id=endpoint_id)
    return WebhookSecretRotated(
        id=endpoint_id, secret=secret, previous_secret_expires_at=expires_at
    )


async def list_attempts(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Client | None,
    endpoint_id: int,
    *,
    limit: int,
    cursor: str | None,
) -> WebhookAttemptPage:
    """The endpoint's delivery attempts, newest first; `client` None is an operator's view."""
    before_id = None if cursor is None else decode_cursor(cursor)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        endpoint = await webhooks_repo.get_endpoint(
            conn, endpoint_id, None if client is None else client.id
        )
        if endpoint is None:
            raise _not_found(endpoint_id)
        attempts = await webhooks_repo.list_attempts(
            conn, endpoint_id, before_id=before_id, limit=limit + 1
        )
    page = attempts[:limit]
    return WebhookAttemptPage(
        data=[
            WebhookAttemptPublic(
                delivery_id=attempt.delivery_id,
                event_id=attempt.event_id,
                event_type=WebhookEventType(attempt.event_type),
                delivery_status=WebhookDeliveryStatus(attempt.delivery_status),
                attempted_at=attempt.attempted_at,
                status_code=attempt.status_code,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
                next_attempt_at=attempt.next_attempt_at,
            )
            for attempt in page
        ],
        next_cursor=encode_cursor(page[-1].id) if len(attempts) > limit else None,
    )


def render_order(data: dict[str, Any]) -> dict[str, Any]:
    """An order stored in an event, in the form GET /v1/orders/{id} gives it: Postgres wrote
    its times in the session's time zone, the API writes them in UTC."""
    order = OrderPublic.model_validate(data)
    times = {
        name: value.astimezone(UTC)
        for name in OrderPublic.model_fields
        if isinstance(value := getattr(order, name), datetime)
    }
    return order.model_copy(update=times).model_dump(mode="json")


def event_public(
    public_id: str, event_type: str, created_at: datetime, data: dict[str, Any]
) -> WebhookEvent:
    return WebhookEvent(
        id=public_id,
        type=WebhookEventType(event_type),
        timestamp=created_at.astimezone(UTC),
        data=render_order(data),
    )


def render_event(
    public_id: str, event_type: str, created_at: datetime, data: dict[str, Any]
) -> bytes:
    """The body of every delivery of the event: the same bytes on every try."""
    return event_public(public_id, event_type, created_at, data).model_dump_json().encode()


async def list_events(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Client,
    *,
    event_type: WebhookEventType | None,
    after: str | None,
    limit: int,
) -> WebhookEventPage:
    """The client's events, oldest first, after the event `after` (an id it was given)."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        after_id = None
        if after is not None:
            cursor = await webhooks_repo.get_event(conn, after, client.id)
            if cursor is None:
                raise InvalidRequest(
                    f"There is no event {after} of yours; events are kept"
                    f" {settings.event_retention_s} s.",
                    errors=[{"loc": ["query", "after"], "msg": "unknown event", "type": "event"}],
                )
            after_id = cursor.id
        events = await webhooks_repo.list_events(
            conn,
            client.id,
            event_type=None if event_type is None else event_type.value,
            after_id=after_id,
            limit=limit + 1,
        )
    return WebhookEventPage(
        data=[
            event_public(event.public_id, event.type, event.created_at, event.data)
            for event in events[:limit]
        ],
        has_more=len(events) > limit,
    )


async def redeliver_event(
    pool: asyncpg.Pool, settings: Settings, client: Client | None, public_id: str
) -> WebhookRedelivery:
    """Sends the event again to the endpoints of its client that take its type now, each as a
    new delivery with the event's own webhook-id; `client` None is an operator's call."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        event = await webhooks_repo.get_event(
            conn, public_id, None if client is None else client.id
        )
        if event is None:
            raise NotFound(f"There is no event {public_id}.")
        deliveries = await webhooks_repo.redeliver(conn, event.id)
    log.info("webhook_event_redelivered", event_id=public_id, deliveries=deliveries)
    return WebhookRedelivery(event_id=public_id, deliveries=deliveries)


async def purge_events(pool: asyncpg.Pool, settings: Settings, *, budget_s: float) -> int:
    """Forgets events older than EVENT_RETENTION_S with their delivery log, in bounded batches
    (kit.purge) for about `budget_s`."""
    return await purge_in_batches(
        pool,
        settings,
        webhooks_repo.purge_events,
        settings.event_retention_s,
        budget_s=budget_s,
        what="webhook_events",
    )
