"""The API's own HTTP scenarios: hello world as the ceiling, the API's endpoints, and the same
on two processes, a bigger pool and uvicorn."""

from bench import load
from bench.scenarios.scenario import Scenario, fixed
from bench.seed import HOT_PRODUCTS, Seed


def scenarios(seed: Seed, miss_window: int) -> list[Scenario]:
    key = seed.api_key
    s = load.static_request

    def miss(n: int) -> str:
        return load.cycling_ids(
            "/v1/products/", seed.miss_first + n * miss_window, miss_window, key
        )

    def orders_script(n: int) -> str:
        return load.place_orders(key, f"r{n}", HOT_PRODUCTS, idempotency=True)

    hot_ids = load.cycling_ids("/v1/products/", seed.hot_first, HOT_PRODUCTS, key)
    return [
        Scenario("hello", "ceiling", "GET /hello (hello world)", "hello1", fixed(s("/hello"))),
        Scenario("post_order", "api", "POST /v1/orders", "api1", orders_script),
        Scenario("product_hit", "api", "GET /v1/products/{id}, cached", "api1", fixed(hot_ids)),
        Scenario("product_miss", "api", "GET /v1/products/{id}, cache miss", "api1", miss),
        Scenario(
            "order_get",
            "api",
            "GET /v1/orders/{id}",
            "api1",
            fixed(load.cycling_ids("/v1/orders/", seed.order_first, seed.order_count, key)),
        ),
        Scenario(
            "orders_page",
            "api",
            "GET /v1/orders?limit=50",
            "api1",
            fixed(s("/v1/orders?limit=50", key)),
        ),
        Scenario(
            "product_hit_cluster_limit",
            "rate_limit",
            "GET /v1/products/{id} cached, RATE_LIMIT_SCOPE=cluster",
            "api1_cluster_limit",
            fixed(hot_ids),
        ),
        Scenario(
            "product_hit_process_limit",
            "rate_limit",
            "GET /v1/products/{id} cached, RATE_LIMIT_SCOPE=process",
            "api1_process_limit",
            fixed(hot_ids),
        ),
        Scenario("hello_2p", "scaling", "GET /hello, 2 processes", "hello2", fixed(s("/hello"))),
        Scenario("post_order_2p", "scaling", "POST /v1/orders, 2 processes", "api2", orders_script),
        Scenario(
            "post_order_pool32",
            "scaling",
            "POST /v1/orders, pool of 32 instead of 10",
            "api1_pool32",
            orders_script,
        ),
        Scenario(
            "product_hit_2p",
            "scaling",
            "GET /v1/products/{id} cached, 2 processes",
            "api2",
            fixed(hot_ids),
        ),
        Scenario(
            "post_order_noconsole",
            "console",
            "POST /v1/orders, CONSOLE_ENABLED=false",
            "api1_noconsole",
            orders_script,
        ),
        Scenario(
            "product_hit_noconsole",
            "console",
            "GET /v1/products/{id} cached, CONSOLE_ENABLED=false",
            "api1_noconsole",
            fixed(hot_ids),
        ),
        Scenario(
            "hello_uvicorn", "server", "GET /hello, uvicorn", "uvicorn_hello", fixed(s("/hello"))
        ),
        Scenario(
            "post_order_uvicorn",
            "server",
            "POST /v1/orders, uvicorn",
            "uvicorn_api",
            orders_script,
        ),
        Scenario(
            "post_order_traced",
            "tracing",
            "POST /v1/orders, tracing on",
            "api1_traced",
            orders_script,
        ),
        Scenario(
            "product_hit_traced",
            "tracing",
            "GET /v1/products/{id} cached, tracing on",
            "api1_traced",
            fixed(hot_ids),
        ),
        Scenario(
            "product_hit_uvicorn",
            "server",
            "GET /v1/products/{id} cached, uvicorn",
            "uvicorn_api",
            fixed(hot_ids),
        ),
    ]
