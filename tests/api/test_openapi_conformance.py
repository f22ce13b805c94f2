"""Schemathesis against the API's own OpenAPI document, over HTTP to a real uvicorn process:
no 5xx, and every response (status, content type, headers, body) is the documented one."""

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from tests.processes import ApiProcess

# A fixed admin key, so that the admin operations are exercised too (client routes take it).
FUZZ_KEY = "ord_schemathesis-fuzz-key-0123456789abcdefghijklmnop"
PRODUCTS = 3
# Per operation and generation mode: enough to find the edges, bounded so the suite stays fast.
EXAMPLES = 50
# Every other check runs: no 5xx; status codes, content types, headers and bodies as documented.
EXCLUDED_CHECKS = {
    # Schema-valid is not always acceptable: no schema says "this product exists" or "this email
    # domain is not a reserved one", so a valid-looking order can rightly be a 422.
    GenerationMode.POSITIVE: [positive_data_acceptance],
    # Unknown query parameters are ignored, as HTTP APIs commonly do, which Schemathesis counts
    # as accepting invalid input; and the key added to every request undoes a "no credentials"
    # mutation. Unauthenticated requests have tests of their own (test_orders, test_security).
    GenerationMode.NEGATIVE: [negative_data_rejection],
}


@pytest.fixture(scope="module")
def fuzzed_api(pg_service: Any, redis_service: Any, mail_sink: Any) -> Iterator[ApiProcess]:
    # Keys are not cached: the tables are emptied before each test, and a cached key would
    # outlive its client row.
    server = ApiProcess(env={"AUTH_CACHE_TTL_S": "0", "LOG_LEVEL": "WARNING"})
    try:
        server.start()
        deadline = time.monotonic() + 30
        while True:
            assert server.process is not None
            assert server.process.poll() is None, server.output()
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        yield server
    finally:
        server.close()


def seed(pg_service: Any) -> None:
    """A client with the fuzz key and a few products, ids 1 to PRODUCTS."""
    key_hash = hashlib.sha256(FUZZ_KEY.encode()).hexdigest()
    pg_service.psql(
        "INSERT INTO clients (name, key_hash, key_prefix, is_admin)"
        f" VALUES ('schemathesis', '\\x{key_hash}', 'ord_schema', true);"
        "INSERT INTO products (sku, name, price_cents, currency, stock)"
        " SELECT 'FUZZ-' || n, 'Fuzz ' || n, 100 * n, 'EUR', 1000000"
        f" FROM generate_series(1, {PRODUCTS}) AS n;"
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_as_documented(
    fuzzed_api: ApiProcess, pg_service: Any, mode: GenerationMode
) -> None:
    seed(pg_service)
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: dict[str, str] = {}

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {FUZZ_KEY}"},
                excluded_checks=EXCLUDED_CHECKS[mode],
                timeout=10,
            )

        try:
            conforms()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing in the operation can be made invalid
        except (Exception, BaseExceptionGroup) as exc:  # every operation is checked and reported
            failures[operation.label] = str(exc)

    assert len(operations) >= 10, [operation.label for operation in operations]
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())
