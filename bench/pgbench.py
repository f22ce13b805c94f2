"""Postgres alone, through pgbench: what the database does with the product's own statements,
against a lean write of the same rows and against one transaction per order on one row.

The product's statements are not copied here: `record_keyed_order` places two orders under an
Idempotency-Key through shop/orders/repository.py on a connection that notes each statement
and its arguments, and `product_order_script` turns what it noted into a pgbench script. What
differs between the two orders is what each order brings of its own (the key, and the id and
time the first statement hands to the second); everything else is bound as the product bound it.
Scripts are written per run into the run directory.
"""

import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, cast

import asyncpg

from bench.stack import BenchError, tree_cpu_seconds
from shop.orders import repository as orders_repo
from shop.orders.repository import KeyedOrder, PricedLine
from shop.orders.schemas import Customer
from shop.orders.service import total_cents

# A random key per transaction: two alike in a run of 10^5 orders has odds of about 10^-9.
_KEY = r"\set key random(1, 4611686018427387903)"
_PARAMETER = re.compile(r"\$(\d+)\b")
_RESULT_PREFIX = "first_"

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


@dataclass
class RecordedStatement:
    sql: str
    args: tuple[Any, ...]
    result: dict[str, Any] = field(default_factory=dict)


class _Recorder:
    """An asyncpg connection that notes each statement, its arguments and its first row."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.statements: list[RecordedStatement] = []

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row = await self._conn.fetchrow(sql, *args)
        self.statements.append(RecordedStatement(sql, args, dict(row) if row is not None else {}))
        return row

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(sql, *args)
        self.statements.append(RecordedStatement(sql, args, dict(rows[0]) if rows else {}))
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        value = await self._conn.fetchval(sql, *args)
        self.statements.append(RecordedStatement(sql, args))
        return value

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self._conn.execute(sql, *args)
        self.statements.append(RecordedStatement(sql, args))
        return status


@dataclass(frozen=True)
class RecordedOrder:
    key: str
    statements: list[RecordedStatement]


async def record_keyed_order(
    conn: asyncpg.Connection, client_id: int, product_ids: tuple[int, int], key: str
) -> RecordedOrder:
    """Places one order of two lines under `key` through the product's repository, as
    POST /v1/orders does (shop.orders.service.place_order_once), noting every statement."""
    recorder = _Recorder(conn)
    as_conn = cast(asyncpg.Connection, recorder)
    plan = await orders_repo.prepare_keyed(as_conn, client_id, key, list(product_ids))
    lines = [
        PricedLine(product_ids[0], 1, plan.prices[product_ids[0]][0]),
        PricedLine(product_ids[1], 2, plan.prices[product_ids[1]][0]),
    ]
    total = total_cents(lines)
    body = (
        f'{{"id":{plan.order_id},"status":"pending","customer":{{"email":'
        f'"c@pgbench.example.com","name":"Customer"}},"total_cents":{total},'
        f'"created_at":"{plan.created_at.isoformat()}"}}'
    ).encode()
    order = KeyedOrder(
        plan=plan,
        client_id=client_id,
        customer=Customer(email="c@pgbench.example.com", name="Customer"),
        lines=lines,
        total_cents=total,
        currency="EUR",
        request_id="pgbench",
        key=key,
        endpoint="POST /v1/orders",
        request_hash=sha256(body).digest(),
        response_status=201,
        response_body=body,
        response_location=f"/v1/orders/{plan.order_id}",
    )
    written = await orders_repo.insert_keyed_with_reservation_jobs(as_conn, [order])
    if plan.order_id not in written:
        raise BenchError("the recorded order was not written")
    return RecordedOrder(key, recorder.statements)


def _text(value: Any) -> str:
    """A value as Postgres reads it from text."""
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _array_text(values: Sequence[Any]) -> str:
    def element(value: Any) -> str:
        if value is None:
            return "NULL"
        return '"' + _text(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(value) for value in values) + "}"


def product_order_script(first: RecordedOrder, second: RecordedOrder) -> tuple[str, dict[str, str]]:
    """The pgbench script of the recorded statements, and its constants (`--define`s).

    A parameter that differs between the two orders is the order's own: its key, or a value the
    first statement returned (then read from it with \\gset). One that differs otherwise (a
    response body naming the order's id) keeps the first order's value; so does every other.
    """
    if [s.sql for s in first.statements] != [s.sql for s in second.statements]:
        raise BenchError("two orders placed the same way ran different statements")
    own: dict[Any, str] = {}
    constants: dict[str, str] = {}
    lines = [_KEY]

    def variable(a: Any, b: Any, name: str) -> str:
        if a is None and b is None:
            return "NULL"
        if a == b or isinstance(a, list | tuple):
            constants[name] = _array_text(a) if isinstance(a, list | tuple) else _text(a)
            return ":" + name
        if a == first.key and b == second.key:
            return ":key"
        if a in own:
            return ":" + own[a]
        constants[name] = _text(a)
        return ":" + name

    for n, (one, two) in enumerate(zip(first.statements, second.statements, strict=True)):

        def bind(match: re.Match[str], n: int = n, one: Any = one, two: Any = two) -> str:
            index = int(match[1])
            a, b = one.args[index - 1], two.args[index - 1]
            name = f"s{n}_p{index}"
            if isinstance(a, list | tuple) and any(x != y for x, y in zip(a, b, strict=True)):
                elements = [
                    variable(x, y, f"{name}_{i}") for i, (x, y) in enumerate(zip(a, b, strict=True))
                ]
                return f"ARRAY[{', '.join(elements)}]"
            return variable(a, b, name)

        sql = _PARAMETER.sub(bind, one.sql).strip()
        results = {
            column: value
            for column, value in one.result.items()
            if value is not None and not isinstance(value, list) and value != two.result.get(column)
        }
        if results and n < len(first.statements) - 1:
            for column, value in results.items():
                own[value] = f"{_RESULT_PREFIX}{column}"
            lines.append(f"{sql} \\gset {_RESULT_PREFIX}")
        else:
            lines.append(f"{sql};")
    return "\n".join(lines) + "\n", constants


def lean_order_script() -> str:
    return _LEAN_ORDER.strip() + "\n"


def row_order_script() -> str:
    return _ROW_ORDER.strip() + "\n"


def lean_order_variables(client_id: int, product_ids: tuple[int, int]) -> dict[str, str]:
    """What the lean write binds: an order of two lines, one and two units at 10.00 EUR."""
    a, b = product_ids
    return {
        "client_id": str(client_id),
        "email": "c@pgbench.example.com",
        "name": "Customer",
        "total": "3000",
        "currency": "EUR",
        "product_ids": f"{{{a},{b}}}",
        "quantities": "{1,2}",
        "prices": "{1000,1000}",
        "job_prefix": "reserve_inventory:",
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
