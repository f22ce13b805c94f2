"""Delivering an event to an endpoint: one signed POST per try, each try recorded.

A delivery's tries run as jobs `deliver_webhook:<delivery id>:<try>`: the first is written to the
outbox with the event, each later one is queued by the try before it, deferred by exponential
backoff with jitter, until a 2xx answer or WEBHOOK_MAX_AGE_S after the event (then the delivery
is dead). The count of tries in Postgres says which try is due, so a job that runs twice (ARQ
delivers at least once) records nothing the second time, and a try whose job Redis lost is queued
again by the worker's sweep (`overdue`). A receiver is sent the same body and `webhook-id` on
every try.

A worker process sends at most WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT requests to one endpoint and
WEBHOOK_MAX_IN_FLIGHT in all at a time. A try over either cap does not wait (it would hold one of
the worker's job slots while it did): it ends at once and runs again a little later, so a
receiver that hangs holds only its share of the slots, and orders keep the rest.
"""

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
import httpx
import structlog

from kit import tracing
from kit.db import connection
from kit.settings import Settings
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs.names import JobName
from shop.models import WebhookDeliveryStatus
from shop.webhooks import addresses, signing
from shop.webhooks import repository as webhooks_repo
from shop.webhooks.repository import AttemptRecord, DeliveryWork, DueDelivery
from shop.webhooks.service import render_event

log = structlog.get_logger(__name__)

# How much of an answer's body is kept in the delivery log.
KEPT_ANSWER_BYTES = 4 * 1024
_MAX_ERROR_CHARS = 500


def job_id(delivery_id: int, attempt: int) -> str:
    return f"{JobName.DELIVER_WEBHOOK.value}:{delivery_id}:{attempt}"


def retry_delay_s(settings: Settings, attempt: int) -> float:
    """Before try `attempt` (1 is the first retry): random in [ceiling/4, ceiling], the ceiling
    doubling from WEBHOOK_RETRY_BACKOFF_S up to WEBHOOK_RETRY_BACKOFF_CAP_S, as jobs back off."""
    ceiling = min(
        settings.webhook_retry_backoff_cap_s,
        settings.webhook_retry_backoff_s * 2 ** max(0, attempt - 1),
    )
    return random.uniform(ceiling / 4, ceiling)


def busy_delay_s(settings: Settings) -> float:
    """How long a try that found its endpoint's slots taken waits: within one request's time,
    a slot is free again."""
    return random.uniform(0.25, 1.0) * settings.webhook_timeout_s


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int | None
    error: str | None
    body: str | None
    latency_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """The worker process's HTTP client for webhooks, and its caps on requests in flight."""

    def __init__(self, settings: Settings, verify: ssl.SSLContext | bool = True) -> None:
        """`verify`: how servers' certificates are checked (the system's CAs by default)."""
        self._settings = settings
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            # Never a proxy from the environment: the request goes to the address checked.
            trust_env=False,
            timeout=httpx.Timeout(
                settings.webhook_timeout_s, connect=settings.webhook_connect_timeout_s
            ),
            # A connection per request: requests go to checked addresses with the endpoint's
            # host name as TLS server name, and a kept connection is pooled by address alone,
            # so it could carry another endpoint's request on the same address.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": "orders-webhooks/1"},
        )
        self._per_endpoint: Counter[int] = Counter()
        self._in_flight = 0

    @contextmanager
    def slot(self, endpoint_id: int) -> Iterator[bool]:
        """Whether a request to the endpoint may start now; held until the block ends."""
        settings = self._settings
        if (
            self._in_flight >= settings.webhook_max_in_flight
            or self._per_endpoint[endpoint_id] >= settings.webhook_max_in_flight_per_endpoint
        ):
            yield False
            return
        self._in_flight += 1
        self._per_endpoint[endpoint_id] += 1
        try:
            yield True
        finally:
            self._in_flight -= 1
            self._per_endpoint[endpoint_id] -= 1
            if not self._per_endpoint[endpoint_id]:
                del self._per_endpoint[endpoint_id]

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """POSTs `body` to `url`, at the address its host resolves to now if that is allowed.
        Never raises for what the receiver or the network did: that is in the answer."""
        started = time.perf_counter()

        def answer(status_code: int | None, error: str | None, kept: bytes | None) -> Answer:
            return Answer(
                status_code=status_code,
                error=None if error is None else error[:_MAX_ERROR_CHARS],
                body=None if kept is None else kept.decode(errors="replace"),
                latency_ms=round((time.perf_counter() - started) * 1000),
            )

        timeout_s = self._settings.webhook_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                target = await addresses.resolve(
                    url, allow_private=self._settings.webhook_allow_private_networks
                )
                # Each checked address in turn, as a client does with a name's addresses,
                # until one takes the connection.
                for n, address in enumerate(target.addresses, 1):
                    try:
                        status_code, kept = await self._send(target, address, headers, body)
                    except httpx.ConnectError:
                        if n == len(target.addresses):
                            raise
                        continue
                    return answer(status_code, None, kept)
                raise AssertionError("resolve() returns at least one address")
        except addresses.DisallowedUrl as exc:
            return answer(None, f"not sent: {exc}", None)
        except (TimeoutError, httpx.TimeoutException):
            return answer(None, f"no answer within {timeout_s:g} s", None)
        except httpx.HTTPError as exc:
            return answer(None, f"{type(exc).__name__}: {exc}", None)

    async def _send(
        self, target: addresses.Target, address: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """The status code and the first KEPT_ANSWER_BYTES of the answer, from `address`,
        with the URL's host as the Host header and as the TLS server name (SNI, certificate)."""
        host = f"[{address}]" if ":" in address else address
        pinned = target.url._replace(netloc=f"{host}:{target.port}").geturl()
        async with self._client.stream(
            "POST",
            pinned,
            content=body,
            headers={**headers, "host": target.url.netloc},
            extensions={"sni_hostname": target.host},
        ) as response:
            kept = b""
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) >= KEPT_ANSWER_BYTES:
                    break
            return response.status_code, kept[:KEPT_ANSWER_BYTES]

    async def close(self) -> None:
        await self._client.aclose()


class Outcome(StrEnum):
    DELIVERED = "delivered"
    # Not delivered; the next try is queued for `next_attempt_at`.
    RETRYING = "retrying"
    DEAD = "dead"
    # The endpoint's slots were all taken: the same try runs again shortly.
    BUSY = "busy"
    # Nothing to do: the try was recorded already, or the delivery is finished or gone.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    next_attempt: int | None = None
    next_attempt_at: datetime | None = None


async def _finish(
    pool: asyncpg.Pool,
    settings: Settings,
    work: DeliveryWork,
    *,
    status: WebhookDeliveryStatus,
    next_attempt_at: datetime | None,
    attempt: AttemptRecord | None,
    disable_reason: str | None = None,
) -> bool:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await webhooks_repo.record_attempt(
            conn,
            work,
            status=status,
            next_attempt_at=next_attempt_at,
            attempt=attempt,
            disable_reason=disable_reason,
        )


async def deliver(
    pool: asyncpg.Pool,
    settings: Settings,
    sender: WebhookSender,
    delivery_id: int,
    attempt: int,
) -> Result:
    """Makes try `attempt` (0 the first) of the delivery, unless it is not the one due."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        work = await webhooks_repo.get_delivery_work(conn, delivery_id)
    if work is None or work.status is not WebhookDeliveryStatus.PENDING:
        return Result(Outcome.SKIPPED)
    if work.attempts != attempt:
        return Result(Outcome.SKIPPED)
    if work.url is None or work.disabled:
        # Deleted or disabled since the event: finished without a request.
        await _finish(
            pool,
            settings,
            work,
            status=WebhookDeliveryStatus.DEAD,
            next_attempt_at=None,
            attempt=None,
        )
        return Result(Outcome.DEAD)
    with sender.slot(work.endpoint_id) as free:
        if not free:
            return Result(Outcome.BUSY)
        body = render_event(
            work.event_public_id, work.event_type, work.event_created_at, work.event_data
        )
        timestamp = int(time.time())
        attempted_at = datetime.now(UTC)
        with tracing.client_span(
            "webhook POST",
            delivery_id=work.id,
            attempt=attempt,
            endpoint_id=work.endpoint_id,
            event_type=work.event_type,
        ):
            answer = await sender.post(
                work.url,
                signing.headers(work.secrets, work.event_public_id, timestamp, body),
                body,
            )
            if answer.status_code is not None:
                tracing.annotate(**{"http.response.status_code": answer.status_code})
    record = AttemptRecord(
        attempted_at=attempted_at,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        error=answer.error,
        response_body=answer.body,
    )
    if answer.delivered:
        status, next_attempt_at, outcome = WebhookDeliveryStatus.DELIVERED, None, Outcome.DELIVERED
    else:
        next_attempt_at = datetime.now(UTC) + timedelta(
            seconds=retry_delay_s(settings, attempt + 1)
        )
        give_up_at = work.event_created_at + timedelta(seconds=settings.webhook_max_age_s)
        if next_attempt_at > give_up_at:
            status, next_attempt_at, outcome = WebhookDeliveryStatus.DEAD, None, Outcome.DEAD
        else:
            status, outcome = WebhookDeliveryStatus.PENDING, Outcome.RETRYING
    failure = answer.error or f"answered HTTP {answer.status_code}"
    recorded = await _finish(
        pool,
        settings,
        work,
        status=status,
        next_attempt_at=next_attempt_at,
        attempt=record,
        disable_reason=(
            f"Deliveries failed for longer than {settings.webhook_max_age_s:g} s; the last"
            f" one: {failure}."
            if outcome is Outcome.DEAD
            else None
        ),
    )
    log_fields: dict[str, Any] = {
        "endpoint_id": work.endpoint_id,
        "event_id": work.event_public_id,
        "status_code": answer.status_code,
        "latency_ms": answer.latency_ms,
    }
    if not recorded:
        log.info("webhook_attempt_recorded_already", **log_fields)
        return Result(Outcome.SKIPPED)
    if outcome is Outcome.DELIVERED:
        log.info("webhook_delivered", **log_fields)
    elif outcome is Outcome.DEAD:
        log.warning("webhook_dead", error=failure, **log_fields)
    else:
        log.info(
            "webhook_attempt_failed", error=failure, next_attempt_at=next_attempt_at, **log_fields
        )
    return Result(outcome, attempt + 1, next_attempt_at)


async def overdue(pool: asyncpg.Pool, settings: Settings, limit: int = 500) -> list[DueDelivery]:
    """Pending deliveries whose try is overdue by WEBHOOK_REDELIVER_AFTER_S: lost by Redis, or
    never queued (Redis was down when the try before ended)."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await webhooks_repo.list_overdue(
            conn,
            settings.webhook_redeliver_after_s,
            limit,
            dead_job_prefix=f"{JobName.DELIVER_WEBHOOK.value}:",
        )


async def record_dead_job(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    delivery_id: int,
    attempt: int,
    error: str,
    traceback: str | None,
    tries: int,
    enqueued_at: datetime | None,
) -> None:
    """A try that failed with a bug rather than an answer, recorded as a dead job: the sweep
    leaves it to operators (`ordersctl jobs --status dead`, `ordersctl retry JOB_ID`)."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        await dead_jobs_repo.insert(
            conn,
            job_id=job_id(delivery_id, attempt),
            function=JobName.DELIVER_WEBHOOK.value,
            args=[delivery_id, attempt],
            kwargs={},
            order_id=None,
            error=error,
            traceback=traceback,
            tries=tries,
            enqueued_at=enqueued_at,
        )
