"""orders reference clients and products without foreign keys

Each foreign key made every order lock its client's row and its products' rows (KEY SHARE) until
its commit: in a flash sale that is every order of one storefront on the same client row and a few
product rows, which Postgres then shares through multixacts, while the reservations update the
same product rows. Clients and products are never deleted (a client is revoked, a product runs
out of stock); the API reads every product of an order, for its price, before writing it.
docs/decisions/0014-no-foreign-keys-from-orders.md

Revision ID: 3c1e7a52b9d4
Revises: df4e8d62fd01
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c1e7a52b9d4"
down_revision: str | None = "df4e8d62fd01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_order_lines_product_id_products", "order_lines", type_="foreignkey")
    op.drop_constraint("fk_orders_client_id_clients", "orders", type_="foreignkey")
    op.drop_constraint(
        "fk_idempotency_keys_client_id_clients", "idempotency_keys", type_="foreignkey"
    )


def downgrade() -> None:
    op.create_foreign_key(
        "fk_idempotency_keys_client_id_clients",
        "idempotency_keys",
        "clients",
        ["client_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key("fk_orders_client_id_clients", "orders", "clients", ["client_id"], ["id"])
    op.create_foreign_key(
        "fk_order_lines_product_id_products", "order_lines", "products", ["product_id"], ["id"]
    )
