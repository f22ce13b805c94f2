"""Delivering events to endpoints: one signed POST per try, each try recorded.

A delivery's first try is an outbox row written with the event; the relay hands such rows to
the queue as batch jobs, as it does orders (`deliver_webhook` with a list of (delivery, try)
pairs), and a job with several tries loads them in one query and sends them concurrently, each
endpoint's in turn. A failed try queues the next one as a job of its own
(`deliver_webhook:<delivery id>:<try>`), deferred by exponential backoff with jitter, until a
2xx answer or WEBHOOK_MAX_AGE_S after the event (then the delivery is dead). The count of tries
in Postgres says which try is due, so a job that runs twice (ARQ delivers at least once)
records nothing the second time, and a try whose job Redis lost is queued again by the worker's
sweep (`overdue`). A receiver is sent the same body and `webhook-id` on every try.

A worker process runs at most WEBHOOK_MAX_IN_FLIGHT webhook jobs at a time, each holding one of
its job slots: a job over that cap does not wait (it would hold a slot while it did) but ends at
once and runs again shortly, so orders always keep the other slots. Within them, requests wait
their turn: at most WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT to one endpoint and WEBHOOK_MAX_IN_FLIGHT
in all are in flight. When a try of a job gets no answer (a timeout, a refused connection), the
job sends its endpoint nothing more: the endpoint's other tries in it are recorded as failed
without a request (`not sent: ...`) and retried with the same backoff, so that a receiver that
is down or hangs costs one request per job rather than one per event. A job starts no request
that could outlast its own time bound; tries it leaves are queued again as jobs of their own.
"""

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
import structlog

from kit import tracing
from kit.db import connection
from kit.settings import Settings
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs.names import JobName
from shop.models import WebhookDeliveryStatus
from shop.webhooks import addresses, signing, transport
from shop.webhooks import repository as webhooks_repo
from shop.webhooks.repository import AttemptRecord, DeliveryWork, DueDelivery
from shop.webhooks.service import render_event

log = structlog.get_logger(__name__)

# How much of an answer's body is kept in the delivery log.
KEPT_ANSWER_BYTES = 4 * 1024
_MAX_ERROR_CHARS = 500
_USER_AGENT = "orders-webhooks/1"


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


def busy_delay_s() -> float:
    """How long a job that found the worker's webhook slots taken waits before it runs again."""
    return random.uniform(0.2, 1.0)


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
        if isinstance(verify, ssl.SSLContext):
            self._tls = verify
        else:
            self._tls = ssl.create_default_context()
            if not verify:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        self._jobs = 0
        self._requests = asyncio.Semaphore(settings.webhook_max_in_flight)
        self._per_endpoint: dict[int, asyncio.Semaphore] = {}
        self._waiting: Counter[int] = Counter()

    @contextmanager
    def job_slot(self) -> Iterator[bool]:
        """Whether a webhook job may run now (fewer than WEBHOOK_MAX_IN_FLIGHT do); held until
        the block ends."""
        if self._jobs >= self._settings.webhook_max_in_flight:
            yield False
            return
        self._jobs += 1
        try:
            yield True
        finally:
            self._jobs -= 1

    @asynccontextmanager
    async def request_slot(self, endpoint_id: int) -> AsyncIterator[None]:
        """Waits until a request to the endpoint may start, within both caps; held until the
        block ends."""
        endpoint = self._per_endpoint.get(endpoint_id)
        if endpoint is None:
            endpoint = asyncio.Semaphore(self._settings.webhook_max_in_flight_per_endpoint)
            self._per_endpoint[endpoint_id] = endpoint
        self._waiting[endpoint_id] += 1
        try:
            async with endpoint, self._requests:
                yield
        finally:
            self._waiting[endpoint_id] -= 1
            if not self._waiting[endpoint_id]:
                del self._waiting[endpoint_id]
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
                    except transport.ConnectFailed:
                        if n == len(target.addresses):
                            raise
                        continue
                    return answer(status_code, None, kept)
                raise AssertionError("resolve() returns at least one address")
        except addresses.DisallowedUrl as exc:
            return answer(None, f"not sent: {exc}", None)
        except TimeoutError:
            return answer(None, f"no answer within {timeout_s:g} s", None)
        except (transport.ConnectFailed, transport.ProtocolFailed) as exc:
            return answer(None, f"{type(exc).__name__}: {exc}", None)
        except OSError as exc:
            return answer(None, f"ConnectionLost: {type(exc).__name__}: {exc}", None)

    async def _send(
        self, target: addresses.Target, address: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """The status code and the first KEPT_ANSWER_BYTES of the answer, from `address`,
        with the URL's host as the Host header and as the TLS server name (SNI, certificate)."""
        path = target.url.path or "/"
        return await transport.post(
            transport.Endpoint(
                address=address,
                port=target.port,
                host=target.host,
                host_header=target.url.netloc,
                target=f"{path}?{target.url.query}" if target.url.query else path,
                tls=target.url.scheme == "https",
            ),
            {"user-agent": _USER_AGENT, **headers},
            body,
            tls=self._tls,
            connect_timeout_s=self._settings.webhook_connect_timeout_s,
            keep_bytes=KEPT_ANSWER_BYTES,
        )

    async def close(self) -> None:
        """Nothing is kept open between requests; here for the worker's shutdown all the same."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    # Not delivered; the next try is queued for `next_attempt_at`.
    RETRYING = "retrying"
    DEAD = "dead"
    # The worker ran as many webhook jobs as it may: the same job runs again shortly.
    BUSY = "busy"
    # Nothing to do: the try was recorded already, or the delivery is finished or gone.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    next_attempt: int | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """What a job's tries came to: each delivery's result, and the tries the job left unmade
    because its time ran out (to be queued again)."""

    results: dict[int, Result]
    left: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class _Made:
    work: DeliveryWork
    attempted_at: datetime
    # None: finished without a request, its endpoint deleted or disabled since the event.
    answer: Answer | None


async def deliver(
    pool: asyncpg.Pool,
    settings: Settings,
    sender: WebhookSender,
    delivery_id: int,
    attempt: int,
) -> Result:
    """Makes try `attempt` (0 the first) of the delivery, unless it is not the one due."""
    batch = await deliver_many(pool, settings, sender, [(delivery_id, attempt)])
    return batch.results[delivery_id]


async def deliver_many(
    pool: asyncpg.Pool,
    settings: Settings,
    sender: WebhookSender,
    tries: Sequence[tuple[int, int]],
    deadline: float | None = None,
) -> Batch:
    """Makes each (delivery, try) that is the one due; starts no request after `deadline`
    (time.monotonic()) minus a request's timeout."""
    wanted = dict(tries)
    results = {delivery_id: Result(Outcome.SKIPPED) for delivery_id in wanted}
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        works = await webhooks_repo.get_delivery_works(conn, list(wanted))
    made: list[_Made] = []
    by_endpoint: dict[int, list[DeliveryWork]] = {}
    for work in works:
        if work.status is not WebhookDeliveryStatus.PENDING or work.attempts != wanted[work.id]:
            continue
        if work.url is None or work.disabled:
            # Deleted or disabled since the event: finished without a request.
            made.append(_Made(work, datetime.now(UTC), None))
            continue
        by_endpoint.setdefault(work.endpoint_id, []).append(work)
    left: list[tuple[int, int]] = []
    sends = [
        _send_to_endpoint(settings, sender, endpoint_works, deadline, made, left)
        for endpoint_works in by_endpoint.values()
    ]
    await asyncio.gather(*sends)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        for one in made:
            results[one.work.id] = await _record(conn, settings, one)
    return Batch(results, left)


async def _send_to_endpoint(
    settings: Settings,
    sender: WebhookSender,
    works: list[DeliveryWork],
    deadline: float | None,
    made: list[_Made],
    left: list[tuple[int, int]],
) -> None:
    """Sends the endpoint its tries, up to its cap at a time, until one gets no answer; the
    rest are then failed tries without a request."""
    queue = list(reversed(works))
    no_answer: str | None = None

    async def sender_loop() -> None:
        nonlocal no_answer
        while queue:
            work = queue.pop()
            # Both checked once the slot is ours: the wait for it may have taken a while.
            async with sender.request_slot(work.endpoint_id):
                if no_answer is not None:
                    made.append(_Made(work, datetime.now(UTC), _skipped(no_answer)))
                    continue
                if (
                    deadline is not None
                    and time.monotonic() + settings.webhook_timeout_s > deadline
                ):
                    left.append((work.id, work.attempts))
                    continue
                attempted_at = datetime.now(UTC)
                answer = await _post(sender, work)
            made.append(_Made(work, attempted_at, answer))
            if answer.status_code is None and no_answer is None:
                no_answer = answer.error

    loops = min(len(works), settings.webhook_max_in_flight_per_endpoint)
    await asyncio.gather(*(sender_loop() for _ in range(loops)))


def _skipped(error: str | None) -> Answer:
    return Answer(
        status_code=None,
        error=f"not sent: another try to this endpoint just failed ({error})",
        body=None,
        latency_ms=0,
    )


async def _post(sender: WebhookSender, work: DeliveryWork) -> Answer:
    assert work.url is not None
    body = render_event(
        work.event_public_id, work.event_type, work.event_created_at, work.event_data
    )
    timestamp = int(time.time())
    with tracing.client_span(
        "webhook POST",
        delivery_id=work.id,
        attempt=work.attempts,
        endpoint_id=work.endpoint_id,
        event_type=work.event_type,
    ):
        answer = await sender.post(
            work.url, signing.headers(work.secrets, work.event_public_id, timestamp, body), body
        )
        if answer.status_code is not None:
            tracing.annotate(**{"http.response.status_code": answer.status_code})
    return answer


async def _record(conn: asyncpg.Connection, settings: Settings, made: _Made) -> Result:
    """Records the try and what it means for the delivery: delivered, retried or dead."""
    work, answer = made.work, made.answer
    attempt = work.attempts
    if answer is None:
        await webhooks_repo.record_attempt(
            conn, work, status=WebhookDeliveryStatus.DEAD, next_attempt_at=None, attempt=None
        )
        return Result(Outcome.DEAD)
    record = AttemptRecord(
        attempted_at=made.attempted_at,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        error=answer.error,
        response_body=answer.body,
    )
    next_attempt_at: datetime | None
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
    recorded = await webhooks_repo.record_attempt(
        conn,
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
        "delivery_id": work.id,
        "attempt": attempt,
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
