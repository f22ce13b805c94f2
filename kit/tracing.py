"""OpenTelemetry tracing, off unless the standard OTEL_* variables turn it on (docs/tracing.md).

Off, nothing is installed: no TracerProvider, no instrumentation, no ASGI layer, and the helpers
below return a shared no-op context manager or None after one check of a module global, so the
hot paths pay nothing measurable. On, each process exports over OTLP HTTP/protobuf under its
own `service.name` (`orders-api`, `orders-worker`, `ordersctl`) unless OTEL_SERVICE_NAME or
OTEL_RESOURCE_ATTRIBUTES names one; the SDK reads OTEL_TRACES_SAMPLER and the exporter's other
variables itself. Postgres and Redis calls are traced by the official instrumentations.

Background loops (ARQ's poll, the relay's sweep, heartbeats, the cache listener) run with
instrumentation suppressed (`quiet_background`), so that an idle process does not export a trace
per poll; a job's span and a request's span start from a context without the suppression, so the
calls made for them are traced as their children.
"""

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, format_span_id, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.typing import EventDict, WrappedLogger

from kit.settings import Settings, otel_exporters

# The SDK, the exporter and the instrumentations are imported only when tracing is turned on:
# off, a process does not even load them.
if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger(__name__)

_TRACECONTEXT = TraceContextTextMapPropagator()
_OFF: AbstractContextManager[None] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class _Tracing:
    provider: "TracerProvider"
    tracer: trace.Tracer


_tracing: _Tracing | None = None


def configure_tracing(
    settings: Settings, service_name: str, processor: "SpanProcessor | None" = None
) -> "TracerProvider | None":
    """Installs tracing for this process if the settings turn it on (or `processor` is given,
    as the tests give an in-memory exporter's); returns the provider, None when off.

    Once per process: a second call returns the provider the first installed.
    """
    global _tracing
    if _tracing is not None:
        return _tracing.provider
    if processor is None and not settings.tracing_enabled:
        return None
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for each in [processor] if processor is not None else _processors(settings):
        provider.add_span_processor(each)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Also the global one, for any other library that traces; ours is passed explicitly.
        trace.set_tracer_provider(provider)
    # The instrumentation package ships no type hints for its constructor.
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=provider)
    _tracing = _Tracing(provider, provider.get_tracer("orders"))
    log.info("tracing_started", service_name=resource.attributes.get(SERVICE_NAME))
    return provider


def _processors(settings: Settings) -> list["SpanProcessor"]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    processors: list[SpanProcessor] = []
    for name in otel_exporters(settings.otel_traces_exporter) or ["otlp"]:
        if name == "otlp":
            processors.append(BatchSpanProcessor(_otlp_exporter(settings)))
        elif name == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
    return processors


def _otlp_exporter(settings: Settings) -> "SpanExporter":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # As the specification says: a signal's own endpoint is used as it is, the general one gets
    # the signal's path. Without either the exporter's default (localhost:4318) stands.
    if settings.otel_exporter_otlp_traces_endpoint:
        return OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_traces_endpoint)
    if settings.otel_exporter_otlp_endpoint:
        base = settings.otel_exporter_otlp_endpoint.rstrip("/")
        return OTLPSpanExporter(endpoint=f"{base}/v1/traces")
    return OTLPSpanExporter()


def shutdown_tracing() -> None:
    """Exports what is buffered and uninstalls tracing (at process exit; the tests, between
    an app with tracing and one without)."""
    global _tracing
    if _tracing is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().uninstrument()
    _tracing.provider.shutdown()
    _tracing = None


def enabled() -> bool:
    return _tracing is not None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store with work it causes; None when off or
    outside a span."""
    if _tracing is None:
        return None
    carrier: dict[str, str] = {}
    _TRACECONTEXT.inject(carrier)
    return carrier.get("traceparent")


def span(name: str, **attributes: Any) -> AbstractContextManager[object]:
    """A span child of the current one (a no-op when off)."""
    if _tracing is None:
        return _OFF
    return _tracing.tracer.start_as_current_span(name, attributes=attributes)


def client_span(name: str, **attributes: Any) -> AbstractContextManager[object]:
    """A span of a call to another service (SMTP, a webhook receiver), child of the current
    one (a no-op when off)."""
    if _tracing is None:
        return _OFF
    return _tracing.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def annotate(**attributes: Any) -> None:
    """Sets attributes on the current span (a no-op when off)."""
    if _tracing is not None:
        trace.get_current_span().set_attributes(attributes)


def job_span(
    name: str, traceparents: Sequence[str | None], **attributes: Any
) -> AbstractContextManager[object]:
    """The span of a job serving the orders whose traceparents are given (a no-op when off).

    A job serving one order is a child of that order's span, in the order's trace. A job
    serving several starts a trace of its own with a link to each order's span: a span has one
    parent, and choosing one order's would hide the others' (docs/tracing.md).
    """
    if _tracing is None:
        return _OFF
    contexts = [_span_context(each) for each in traceparents]
    valid = [each for each in contexts if each is not None]
    parent = Context()
    links: list[Link] = []
    if len(traceparents) == 1 and valid:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0]), parent)
    else:
        links = [Link(each) for each in valid]
    return _started_from(_tracing.tracer, parent, name, SpanKind.CONSUMER, links, attributes)


def publish_span(
    name: str, traceparents: Sequence[str | None], **attributes: Any
) -> AbstractContextManager[object]:
    """The span of handing work over to the queue for the spans given (the outbox rows'): a
    trace of its own linked to each, as a batch job's is (a no-op when off)."""
    if _tracing is None:
        return _OFF
    links = [Link(each) for each in map(_span_context, traceparents) if each is not None]
    return _started_from(_tracing.tracer, Context(), name, SpanKind.PRODUCER, links, attributes)


@contextlib.contextmanager
def _started_from(
    tracer: trace.Tracer,
    parent: Context,
    name: str,
    kind: SpanKind,
    links: list[Link],
    attributes: dict[str, Any],
) -> Iterator[trace.Span]:
    # `parent` replaces the current context for the span's duration, not only as its parent: a
    # job runs inside ARQ's suppressed poll loop, and its own calls must be traced.
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            name, kind=kind, links=links, attributes=attributes
        ) as started:
            yield started
    finally:
        otel_context.detach(token)


def name_server_span(method: str, route: str) -> None:
    """Names the current (server) span after the route template the router matched."""
    current = trace.get_current_span()
    current.update_name(f"{method} {route}")
    current.set_attribute("http.route", route)


def _span_context(traceparent: str | None) -> trace.SpanContext | None:
    if not traceparent:
        return None
    context = _TRACECONTEXT.extract({"traceparent": traceparent}, context=Context())
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


def background_context() -> contextvars.Context | None:
    """A context for background tasks (`asyncio.create_task(..., context=...)`) in which
    instrumentation is suppressed; None (the current one) when off."""
    if _tracing is None:
        return None
    background = contextvars.copy_context()
    background.run(_suppress)
    return background


def _suppress() -> None:
    otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))


def quiet_background() -> None:
    """Suppresses instrumentation in the current context for good: call at the start of a
    process's background work (the tasks it then creates inherit it). A no-op when off."""
    if _tracing is not None:
        _suppress()


def add_trace_ids(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """structlog processor: the current span's trace and span ids, beside the request id."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event["trace_id"] = format_trace_id(span_context.trace_id)
        event["span_id"] = format_span_id(span_context.span_id)
    return event
