"""The HTTP scenarios in interleaved rounds: every scenario once per round, in a shuffled order.

The machine has two cores: scenarios run one at a time, and a round runs each of them once, so
that a neighbour's load lands on all scenarios alike rather than on whichever ran at that
moment. Figures are medians over rounds.
"""

import os
import random
from typing import Any

from bench import load
from bench.load import LoadResult
from bench.options import Options
from bench.phases.common import say
from bench.programs import ensure_wrk
from bench.results import Results
from bench.scenarios import Scenario
from bench.stack import PRODUCTION_POOL, PRODUCTION_SERVER, Server, Stack, uvicorn_argv


def start_servers(stack: Stack, needed: set[str]) -> dict[str, Server]:
    hello = "bench.claims_app:hello_app"
    specs: list[tuple[str, Any, str, int, dict[str, str]]] = [
        ("api1", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL),
        ("api2", PRODUCTION_SERVER, "api.main:app", 2, PRODUCTION_POOL),
        (
            "api1_pool32",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "32"},
        ),
        # The two rate limit scopes side by side (docs/decisions/0035-cluster-rate-limit.md).
        (
            "api1_cluster_limit",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {**PRODUCTION_POOL, "RATE_LIMIT_SCOPE": "cluster"},
        ),
        (
            "api1_process_limit",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {**PRODUCTION_POOL, "RATE_LIMIT_SCOPE": "process"},
        ),
        # The same API without the operator console's routes: what mounting it costs.
        (
            "api1_noconsole",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {**PRODUCTION_POOL, "CONSOLE_ENABLED": "false"},
        ),
        ("hello1", PRODUCTION_SERVER, hello, 1, {}),
        ("hello2", PRODUCTION_SERVER, hello, 2, {}),
        ("uvicorn_hello", uvicorn_argv, hello, 1, {}),
        ("uvicorn_api", uvicorn_argv, "api.main:app", 1, PRODUCTION_POOL),
        ("mw_body", PRODUCTION_SERVER, "bench.claims_app:body_logging_app", 1, {}),
        ("mw_http", PRODUCTION_SERVER, "bench.claims_app:http_timing_app", 1, {}),
        ("mw_asgi", PRODUCTION_SERVER, "bench.claims_app:asgi_timing_app", 1, {}),
        (
            "claims",
            PRODUCTION_SERVER,
            "bench.claims_app:claims_app",
            1,
            {"BENCH_NOOP_QUEUE": "bench:noop1"},
        ),
    ]
    servers = {}
    if "api1_traced" in needed:
        # Tracing on, every span exported (the SDK's default sampler) to a receiver that keeps
        # nothing (bench/otlp_sink.py), on the same machine.
        sink = stack.server("otlp_sink", PRODUCTION_SERVER, "bench.otlp_sink:app", 1)
        specs.append(
            (
                "api1_traced",
                PRODUCTION_SERVER,
                "api.main:app",
                1,
                {**PRODUCTION_POOL, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url},
            )
        )
    for name, argv_for, app, workers, env in specs:
        if name not in needed:
            continue
        say(f"starting {name}: {app} x{workers}")
        servers[name] = stack.server(name, argv_for, app, workers, env)
    return servers


def run(
    stack: Stack,
    servers: dict[str, Server],
    scenarios: list[Scenario],
    options: Options,
    results: Results,
) -> None:
    if not scenarios:
        return
    wrk = ensure_wrk()
    scripts_dir = stack.root / "lua"
    scripts_dir.mkdir(exist_ok=True)
    invocation: dict[str, int] = {}

    def once(scenario: Scenario, seconds: float) -> LoadResult:
        n = invocation.get(scenario.name, 0)
        invocation[scenario.name] = n + 1
        script = scripts_dir / f"{scenario.name}-{n}.lua"
        script.write_text(scenario.script(n))
        server = servers[scenario.server]
        assert server.process is not None
        return load.run_wrk(
            wrk,
            server.url,
            script,
            seconds=seconds,
            connections=scenario.connections,
            server_pid=server.pid,
            postgres_pid=stack.postgres.pid or 0,
            redis_pid=stack.redis.pid or 0,
        )

    if options.warmup_s > 0:
        say("warming up every scenario once")
        for scenario in scenarios:
            once(scenario, options.warmup_s)
    for round_no in range(1, options.rounds + 1):
        load1 = os.getloadavg()[0]
        say(f"round {round_no}/{options.rounds} (load average {load1:.2f})")
        order = list(scenarios)
        # The order within a round changes too, so that no scenario always follows the heaviest.
        random.Random(round_no).shuffle(order)
        for scenario in order:
            stack.check()
            results.loads.setdefault(scenario.name, []).append(os.getloadavg()[0])
            result = once(scenario, options.seconds)
            results.http.setdefault(scenario.name, []).append(result)
            say(
                f"  {scenario.name:28s} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
            )
