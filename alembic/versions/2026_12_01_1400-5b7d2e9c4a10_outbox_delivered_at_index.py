"""outbox delivered_at index, for the retention purge

Revision ID: 5b7d2e9c4a10
Revises: cff18e2071cd
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "5b7d2e9c4a10"
down_revision: str | None = "cff18e2071cd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Concurrently: a deployment's outbox holds every delivered row since it started, and a
    # plain CREATE INDEX would block the API's inserts for as long as the build takes.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_delivered_at",
            "outbox",
            ["delivered_at"],
            unique=False,
            postgresql_where=sa.text("delivered_at IS NOT NULL"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_outbox_delivered_at",
            table_name="outbox",
            postgresql_where=sa.text("delivered_at IS NOT NULL"),
            postgresql_concurrently=True,
        )
