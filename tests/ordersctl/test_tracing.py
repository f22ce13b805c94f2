"""`ordersctl` with tracing on: each command is one trace (ordersctl/services.py)."""

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kit import tracing
from kit.settings import Settings
from tests.ordersctl.fixtures import ctl


async def test_a_command_is_one_span_with_its_postgres_calls_as_children(
    settings: Settings,
) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(settings, "ordersctl", SimpleSpanProcessor(exporter))
    try:
        result = await ctl("outbox")
    finally:
        tracing.shutdown_tracing()
    assert result.exit_code == 0, result.output

    spans = exporter.get_finished_spans()
    [command] = [span for span in spans if span.name == "ordersctl outbox"]
    assert command.parent is None
    queries = [
        span
        for span in spans
        if span.instrumentation_scope is not None
        and span.instrumentation_scope.name == "opentelemetry.instrumentation.asyncpg"
    ]
    assert queries
    assert all(
        query.parent is not None and query.parent.span_id == command.context.span_id
        for query in queries
    )
