"""Postgres alone, through pgbench: what the database does with the product's own statements,
against a lean write of the same rows and against one transaction per order on one row.

Scripts are written per run into the run directory. The product's statements are taken from
shop/orders/repository.py as they are, their `$n` parameters bound to pgbench variables.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from bench.stack import BenchError, tree_cpu_seconds
from shop.jobs.names import JobName, job_id_prefix
from shop.orders import idempotency_repository as idempotency_repo
from shop.orders import repository as orders_repo

# A random key per transaction: two alike in a run of 10^5 orders has odds of about 10^-9.
_KEY = r"\set key random(1, 4611686018427387903)"
_PARAMETER = re.compile(r"\$(\d+)\b")

# The lean write: an order, its two lines and its outbox row in one statement, into scratch
# tables without foreign keys and with a primary key as their only index (bench.repository).
_LEAN_ORDER = """
WITH new_order AS (
    INSERT INTO bench_lean_orders (client_id, customer_email, customer_name, total_cents,
                                   currency)
    VALUES (:client_id, :email, :name, :total, :currency)
    RETURNING id
), new_lines AS (
    INSERT INTO bench_lean_lines (order_id, position, product_id, quantity, unit_price_cents)
    SELECT new_order.id, line.position, line.product_id, line.quantity, line.unit_price_cents
    FROM new_order, unnest(:product_ids::bigint[], :quantities::int[], :prices::bigint[])
         WITH ORDINALITY AS line(product_id, quantity, unit_price_cents, position)
)
INSERT INTO bench_lean_outbox (job_id, args, order_id)
SELECT :job_prefix || new_order.id, jsonb_build_array(new_order.id), new_order.id
FROM new_order;
"""

# One order confirmed on one product in a transaction of its own: the row's lock is held until
# the commit is on disk, so such transactions on one row run one after another.
_ROW_ORDER = """
WITH taken AS (
    UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = :product RETURNING id
)
INSERT INTO bench_row_confirmations (product_id) SELECT id FROM taken;
"""


def _bind(sql: str, names: dict[int, str]) -> str:
    """The statement with each `$n` replaced by pgbench's `:name`, and no trailing newline."""
    return _PARAMETER.sub(lambda match: ":" + names[int(match[1])], sql).strip()


def product_order_script() -> str:
    """The two round trips of POST /v1/orders under an Idempotency-Key (shop.orders.service
    place_order_once): read the stored key, prices and the new order's id; then write the order,
    its lines, its outbox row and the key with its response, in one statement."""
    prepare = _bind(
        orders_repo._PREPARE_KEYED_ORDER,
        {1: "client_id", 2: "key", 3: "product_ids"},
    )
    insert = _bind(
        orders_repo._INSERT_KEYED_ORDER,
        {
            1: "client_id",
            2: "email",
            3: "name",
            4: "total",
            5: "currency",
            6: "request_id",
            7: "product_ids",
            8: "quantities",
            9: "prices",
            10: "job_prefix",
            11: "job_function",
            12: "key",
            13: "lock_namespace",
            14: "plan_order_id",
            15: "plan_created_at",
            16: "endpoint",
            17: "request_hash",
            18: "status",
            19: "body",
            20: "location",
        },
    )
    return f"{_KEY}\n{prepare} \\gset plan_\n{insert};\n"


def lean_order_script() -> str:
    return _LEAN_ORDER.strip() + "\n"


def row_order_script() -> str:
    return _ROW_ORDER.strip() + "\n"


def order_variables(client_id: int, product_ids: tuple[int, int]) -> dict[str, str]:
    """What an order of two lines binds: the product's values, as the API would send them."""
    a, b = product_ids
    body = (
        (
            '{"id":1,"status":"pending","customer":{"email":"c@pgbench.example.com",'
            '"name":"Customer"},"items":[{"product_id":A,"quantity":1,"unit_price_cents":1000},'
            '{"product_id":B,"quantity":2,"unit_price_cents":1000}],"total_cents":3000,'
            '"currency":"EUR","created_at":"2026-01-01T00:00:00Z","confirmed_at":null,'
            '"rejected_at":null,"cancelled_at":null,"rejection_reason":null,'
            '"confirmation_sent_at":null}'
        )
        .replace(":A,", f":{a},")
        .replace(":B,", f":{b},")
    )
    return {
        "client_id": str(client_id),
        "email": "c@pgbench.example.com",
        "name": "Customer",
        "total": "3000",
        "currency": "EUR",
        "request_id": "pgbench",
        "product_ids": f"{{{a},{b}}}",
        "quantities": "{1,2}",
        "prices": "{1000,1000}",
        "job_prefix": job_id_prefix(JobName.RESERVE_INVENTORY),
        "job_function": JobName.RESERVE_INVENTORY.value,
        "lock_namespace": str(idempotency_repo.LOCK_NAMESPACE),
        "endpoint": "POST /v1/orders",
        "request_hash": "\\x" + sha256(body.encode()).hexdigest(),
        "status": "201",
        "body": "\\x" + body.encode().hex(),
        "location": "/v1/orders/1",
    }


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int
    latency_ms: float
    clients: int
    seconds: float
    pgbench_cpu_s: float
    postgres_cpu_s: float


def run(
    pgbench: str,
    dsn: str,
    script: Path,
    *,
    clients: int,
    seconds: float,
    variables: dict[str, str],
    postgres_pid: int,
) -> PgbenchResult:
    argv = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        "--jobs=2",
        f"--time={max(1, round(seconds))}",
        f"--file={script}",
        *(f"--define={name}={value}" for name, value in variables.items()),
        dsn,
    ]
    postgres_before = tree_cpu_seconds(postgres_pid)
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    postgres_cpu = tree_cpu_seconds(postgres_pid) - postgres_before
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.MULTILINE)
    done = re.search(r"^number of transactions actually processed: (\d+)", output, re.MULTILINE)
    latency = re.search(r"^latency average = ([\d.]+) ms", output, re.MULTILINE)
    if os.waitstatus_to_exitcode(status) != 0 or not (tps and done and latency):
        raise BenchError(f"pgbench {script.name} failed: {output[-2000:]}")
    return PgbenchResult(
        tps=float(tps[1]),
        transactions=int(done[1]),
        latency_ms=float(latency[1]),
        clients=clients,
        seconds=elapsed,
        pgbench_cpu_s=usage.ru_utime + usage.ru_stime,
        postgres_cpu_s=postgres_cpu,
    )
