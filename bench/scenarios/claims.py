"""The scenarios behind the guide's claims, on bench.claims_app: drivers, connections per
request, serialisation and middleware."""

from bench import load
from bench.scenarios.scenario import Scenario, fixed
from bench.seed import HOT_PRODUCTS, Seed


def scenarios(seed: Seed) -> list[Scenario]:
    hot = seed.hot_first
    s = load.static_request
    by_id = load.cycling_ids("/driver/async/", hot, HOT_PRODUCTS, None)
    greeting = s("/hello", method="POST", body='{"name": "Ada"}')
    return [
        Scenario(
            "driver_sync_in_async",
            "claim_driver",
            "sync driver (psycopg) in async def",
            "claims",
            fixed(load.cycling_ids("/driver/sync-in-async/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "driver_async",
            "claim_driver",
            "async driver (asyncpg pool) in async def",
            "claims",
            fixed(by_id),
        ),
        Scenario(
            "driver_sync_def",
            "claim_driver",
            "sync driver (psycopg) in def, threadpool",
            "claims",
            fixed(load.cycling_ids("/driver/sync-def/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_new",
            "claim_pool",
            "new connection per request, 64 connections",
            "claims",
            fixed(load.cycling_ids("/conn/new/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_pool",
            "claim_pool",
            "pooled connection, 64 connections",
            "claims",
            fixed(load.cycling_ids("/conn/pool/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_new_c1",
            "claim_pool",
            "new connection per request, 1 connection",
            "claims",
            fixed(load.cycling_ids("/conn/new/", hot, HOT_PRODUCTS, None)),
            connections=1,
        ),
        Scenario(
            "conn_pool_c1",
            "claim_pool",
            "pooled connection, 1 connection",
            "claims",
            fixed(load.cycling_ids("/conn/pool/", hot, HOT_PRODUCTS, None)),
            connections=1,
        ),
        Scenario(
            "ser_star_dicts",
            "claim_serialize",
            "SELECT * as dicts, 100 rows",
            "claims",
            fixed(s("/serialize/star-dicts")),
        ),
        Scenario(
            "ser_typed",
            "claim_serialize",
            "3 columns, typed return, 100 rows",
            "claims",
            fixed(s("/serialize/columns-typed")),
        ),
        Scenario(
            "ser_typed_response_class",
            "claim_serialize",
            "3 columns, typed, response_class=JSONResponse, 100 rows",
            "claims",
            fixed(s("/serialize/columns-typed-response-class")),
        ),
        Scenario(
            "mw_none", "claim_middleware", "POST /hello, no middleware", "hello1", fixed(greeting)
        ),
        Scenario(
            "mw_body_logging",
            "claim_middleware",
            "@app.middleware body logging (guide BAD)",
            "mw_body",
            fixed(greeting),
        ),
        Scenario(
            "mw_http_timing",
            "claim_middleware",
            "@app.middleware timing (guide GOOD)",
            "mw_http",
            fixed(greeting),
        ),
        Scenario(
            "mw_asgi_timing",
            "claim_middleware",
            "pure ASGI timing (the product's)",
            "mw_asgi",
            fixed(greeting),
        ),
    ]
