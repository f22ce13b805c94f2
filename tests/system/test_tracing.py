"""One trace per order: the request's span, then the outbox, the jobs, SMTP and the webhook.

In process, with the SDK's in-memory exporter behind the app and the jobs of a worker; then as
real processes exporting OTLP over HTTP/protobuf to a collector of the test's own.
"""

from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kit import tracing
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import api_with, bearer, wait_for
from tests.processes import ApiProcess, WorkerProcess
from tests.webhook_fixtures import Receiver, pipeline, running_receiver

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

# A storefront's trace, as its own tracer would send it on.
CLIENT_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"


@pytest.fixture
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span kept in memory; off again after the test."""
    assert not tracing.enabled()
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(settings, "orders-test", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def _order(product: ProductPublic, quantity: int = 1) -> dict[str, Any]:
    return {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": [{"product_id": product.id, "quantity": quantity}],
    }


def _one(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, [span.name for span in spans]
    return named[0]


def _children(spans: Iterable[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


def _is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        span.parent is not None
        and span.context.trace_id == parent.context.trace_id
        and span.parent.span_id == parent.context.span_id
    )


def _scopes(spans: Iterable[ReadableSpan]) -> set[str]:
    return {span.instrumentation_scope.name for span in spans if span.instrumentation_scope}


def _traceparent(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def _webhook_endpoint(api: httpx.AsyncClient, key: str, receiver: Receiver) -> None:
    created = await api.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "events": ["order.created"]},
        headers=bearer(key),
    )
    assert created.status_code == 201, created.text


async def test_one_order_is_one_trace_from_the_request_through_its_jobs_smtp_and_webhook(
    spans: InMemorySpanExporter,
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with (
        api_with(settings, webhook_allow_private_networks=True) as api,
        pipeline(settings) as jobs,
        running_receiver() as receiver,
    ):
        await _webhook_endpoint(api, client_key, receiver)
        response = await api.post("/v1/orders", json=_order(product), headers=bearer(client_key))
        assert response.status_code == 201
        await jobs.run_until_idle()
    assert len(receiver.received) == 1
    finished = spans.get_finished_spans()

    request = _one(finished, "POST /v1/orders")
    assert request.kind is SpanKind.SERVER
    assert request.parent is None
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/orders"
    # The order's transaction, through the asyncpg instrumentation.
    assert "opentelemetry.instrumentation.asyncpg" in _scopes(_children(finished, request))
    stored = await db.fetchval(
        "SELECT traceparent FROM outbox WHERE job_id = $1",
        f"reserve_inventory:{response.json()['id']}",
    )
    assert stored == _traceparent(request)

    publish = [span for span in finished if span.name.endswith(" publish")]
    assert any(
        link.context.span_id == request.context.span_id for span in publish for link in span.links
    )
    reserve = _one(finished, "reserve_inventory")
    confirm = _one(finished, "send_confirmation")
    deliver = _one(finished, "deliver_webhook")
    for job in (reserve, confirm, deliver):
        assert job.kind is SpanKind.CONSUMER
        assert _is_child(job, request), job.name
    assert "opentelemetry.instrumentation.asyncpg" in _scopes(_children(finished, reserve))
    # The confirmation's claim in Redis, through the redis instrumentation.
    assert "opentelemetry.instrumentation.redis" in _scopes(_children(finished, confirm))
    smtp = _one(finished, "smtp send")
    assert smtp.kind is SpanKind.CLIENT
    assert _is_child(smtp, confirm)
    webhook = _one(finished, "webhook POST")
    assert webhook.kind is SpanKind.CLIENT
    assert _is_child(webhook, deliver)
    assert webhook.attributes is not None
    assert webhook.attributes["http.response.status_code"] == 200


async def test_a_job_serving_several_orders_links_to_each_orders_span(
    spans: InMemorySpanExporter,
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product(stock=5)
    async with api_with(settings) as api, pipeline(settings) as jobs:
        for _ in range(3):
            response = await api.post(
                "/v1/orders", json=_order(product), headers=bearer(client_key)
            )
            assert response.status_code == 201
        await jobs.run_until_idle()
    finished = spans.get_finished_spans()

    requests = [span for span in finished if span.name == "POST /v1/orders"]
    assert len(requests) == 3
    reserve = _one(finished, "reserve_inventory")
    # A trace of its own (a span has one parent), linked to every order's request.
    assert reserve.parent is None
    assert {link.context.span_id for link in reserve.links} == {
        request.context.span_id for request in requests
    }
    assert reserve.attributes is not None
    assert reserve.attributes["orders"] == 3
    confirm = _one(finished, "send_confirmation")
    assert len(confirm.links) == 3
    # Each email is a span of its own in the batch's trace.
    sends = [span for span in finished if span.name == "smtp send"]
    assert len(sends) == 3
    assert all(_is_child(send, confirm) for send in sends)


async def test_a_clients_traceparent_is_continued_by_the_request_and_its_jobs(
    spans: InMemorySpanExporter,
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product(stock=5)
    async with api_with(settings) as api, pipeline(settings) as jobs:
        response = await api.post(
            "/v1/orders",
            json=_order(product),
            headers={**bearer(client_key), "traceparent": CLIENT_TRACEPARENT},
        )
        assert response.status_code == 201
        await jobs.run_until_idle()
    finished = spans.get_finished_spans()

    request = _one(finished, "POST /v1/orders")
    assert f"{request.context.trace_id:032x}" == CLIENT_TRACE_ID
    assert request.parent is not None
    assert request.parent.is_remote
    assert f"{request.parent.span_id:016x}" == CLIENT_SPAN_ID
    for name in ("reserve_inventory", "send_confirmation", "smtp send"):
        assert f"{_one(finished, name).context.trace_id:032x}" == CLIENT_TRACE_ID


async def test_a_product_read_answered_from_the_cache_before_routing_has_its_server_span(
    spans: InMemorySpanExporter,
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product()
    async with api_with(settings) as api:
        for _ in range(2):
            response = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
            assert response.status_code == 200
    reads = [
        span for span in spans.get_finished_spans() if span.name == "GET /v1/products/{product_id}"
    ]
    # The first through FastAPI (it fills the cache), the second answered before routing.
    assert len(reads) == 2
    assert all(span.kind is SpanKind.SERVER and span.parent is None for span in reads)


async def test_with_tracing_off_nothing_is_instrumented_and_no_span_is_created(
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not settings.tracing_enabled
    # Any span made through the OpenTelemetry API, by any library, would land here.
    exporter = InMemorySpanExporter()
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", recording)
    product = await make_product(stock=5)
    async with (
        api_with(settings, webhook_allow_private_networks=True) as api,
        pipeline(settings) as jobs,
        running_receiver() as receiver,
    ):
        assert not any(
            middleware.cls is OpenTelemetryMiddleware for middleware in api_app(api).user_middleware
        )
        await _webhook_endpoint(api, client_key, receiver)
        response = await api.post("/v1/orders", json=_order(product), headers=bearer(client_key))
        assert response.status_code == 201
        assert "traceparent" not in response.headers
        await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
        await jobs.run_until_idle()
    assert len(receiver.received) == 1
    assert not tracing.enabled()
    assert not hasattr(asyncpg.Connection.execute, "__wrapped__")
    assert [(s.name, s.instrumentation_scope.name) for s in exporter.get_finished_spans()] == []


def api_app(api: httpx.AsyncClient) -> Any:
    transport = api._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


@dataclass
class _Collector(Receiver):
    """An OTLP/HTTP collector: keeps each export request, decoded from protobuf."""

    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await super().__call__(scope, receive, send)

    def spans(self) -> list[tuple[str, str, Any]]:
        """Each exported span, with the service.name of the process that sent it and the name
        of the instrumentation that made it."""
        found = []
        for request in self.received:
            export = ExportTraceServiceRequest.FromString(request.body)
            for resource_spans in export.resource_spans:
                attributes = {
                    attribute.key: attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found += [
                        (attributes["service.name"], scope_spans.scope.name, span)
                        for span in scope_spans.spans
                    ]
        return found


@pytest.mark.slow
async def test_api_and_worker_processes_export_one_orders_trace_over_otlp_http_protobuf(
    spawn_api: Callable[..., ApiProcess],
    spawn_worker: Callable[..., WorkerProcess],
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    collector = _Collector()
    await collector.start()
    try:
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            # Exported within 50 ms rather than the SDK's default 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        # Every request counts as slow here, so the API writes one log line per request.
        api = spawn_api(SLOW_REQUEST_S="0.000001", **otel)
        worker = spawn_worker(**otel)
        await api.wait_until_ready()
        await worker.wait_until_started()
        async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
            response = await client.post(
                "/v1/orders",
                json=_order(product),
                headers={**bearer(client_key), "X-Request-ID": "traced-7"},
            )
        assert response.status_code == 201

        def names() -> set[tuple[str, str]]:
            return {(service, span.name) for service, _, span in collector.spans()}

        async def exported() -> bool:
            return {
                ("orders-api", "POST /v1/orders"),
                ("orders-worker", "reserve_inventory"),
                ("orders-worker", "send_confirmation"),
                ("orders-worker", "smtp send"),
            } <= names()

        await wait_for(exported, timeout_s=30)
    finally:
        await collector.stop()
    assert all(r.headers["content-type"] == "application/x-protobuf" for r in collector.received)
    assert set(collector.paths) == {"/v1/traces"}
    exported_spans = collector.spans()
    by_name = {span.name: span for _, _, span in exported_spans}
    request = by_name["POST /v1/orders"]
    trace_id = request.trace_id.hex()
    for name in ("reserve_inventory", "send_confirmation", "smtp send"):
        assert by_name[name].trace_id.hex() == trace_id
    assert by_name["reserve_inventory"].parent_span_id == request.span_id
    # Postgres and Redis calls are traced inside requests and jobs only: ARQ's polls, the
    # relay's sweeps and the heartbeats start no trace of their own.
    assert not [
        (service, span.name)
        for service, scope, span in exported_spans
        if scope in {"opentelemetry.instrumentation.asyncpg", "opentelemetry.instrumentation.redis"}
        and not span.parent_span_id
    ]

    api_lines = [line for line in api.log_events() if line.get("request_id") == "traced-7"]
    assert [(line["trace_id"], line["span_id"]) for line in api_lines] == [
        (trace_id, request.span_id.hex())
    ]
    job_lines = [
        line
        for line in worker.log_events()
        if line.get("request_id") == "traced-7" and line["event"] == "inventory_reserved"
    ]
    assert [line["trace_id"] for line in job_lines] == [trace_id]
    assert job_lines[0]["span_id"] == by_name["reserve_inventory"].span_id.hex()
