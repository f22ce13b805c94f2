"""The pgbench script made from two recorded orders: per order what differs, the rest as is."""

from datetime import UTC, datetime

from bench.pgbench import RecordedOrder, RecordedStatement, product_order_script

FIRST_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SECOND_AT = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)


def _order(key: str, order_id: int, created_at: datetime) -> RecordedOrder:
    return RecordedOrder(
        key,
        [
            RecordedStatement(
                "SELECT nextval('s') AS order_id, now() AS created_at, k.body"
                " FROM keys AS k WHERE k.client = $1 AND k.key = $2",
                (7, key),
                {"order_id": order_id, "created_at": created_at, "body": None},
            ),
            RecordedStatement(
                "INSERT INTO orders SELECT * FROM unnest($1::bigint[], $2::timestamptz[],"
                " $3::text[], $4::bytea[]), $5",
                ([order_id], [created_at], [key], [f"/orders/{order_id}".encode()], 7),
                {"id": order_id},
            ),
        ],
    )


def test_the_key_and_what_the_first_statement_returns_are_bound_per_transaction() -> None:
    script, constants = product_order_script(
        _order("k1", 100, FIRST_AT), _order("k2", 101, SECOND_AT)
    )

    lines = script.splitlines()
    assert lines[0].startswith(r"\set key random(")
    assert lines[1].endswith(r"k.client = :s0_p1 AND k.key = :key \gset first_")
    assert lines[2] == (
        "INSERT INTO orders SELECT * FROM unnest(ARRAY[:first_order_id]::bigint[],"
        " ARRAY[:first_created_at]::timestamptz[], ARRAY[:key]::text[],"
        " ARRAY[:s1_p4_0]::bytea[]), :s1_p5;"
    )
    assert constants == {"s0_p1": "7", "s1_p4_0": "\\x" + b"/orders/100".hex(), "s1_p5": "7"}
