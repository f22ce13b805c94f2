"""When tracing is on, and what names a process's traces (kit/tracing.py)."""

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from kit import tracing
from kit.settings import Settings


@pytest.fixture
def fresh_tracing() -> Iterator[None]:
    assert not tracing.enabled()
    yield
    tracing.shutdown_tracing()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_an_endpoint_is_configured(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().tracing_enabled is on


@pytest.mark.parametrize(
    "env",
    [{"OTEL_TRACES_EXPORTER": "zipkin"}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}],
)
def test_an_exporter_or_protocol_that_is_not_installed_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_with_tracing_off_no_provider_is_installed(fresh_tracing: None) -> None:
    assert tracing.configure_tracing(Settings(), "orders-api") is None
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None


def test_each_process_names_its_service_unless_otel_service_name_does(
    monkeypatch: pytest.MonkeyPatch, fresh_tracing: None
) -> None:
    memory = InMemorySpanExporter()
    provider = tracing.configure_tracing(Settings(), "orders-worker", SimpleSpanProcessor(memory))
    assert provider is not None
    assert provider.resource.attributes[SERVICE_NAME] == "orders-worker"
    tracing.shutdown_tracing()

    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-orders")
    memory = InMemorySpanExporter()
    provider = tracing.configure_tracing(Settings(), "orders-worker", SimpleSpanProcessor(memory))
    assert provider is not None
    assert provider.resource.attributes[SERVICE_NAME] == "checkout-orders"
