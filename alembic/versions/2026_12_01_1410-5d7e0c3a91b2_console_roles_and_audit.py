"""console roles of admin keys and the console's audit log

Existing admin keys become operators: before the console they could do everything with ordersctl
already. docs/console.md.

Revision ID: 5d7e0c3a91b2
Revises: 7a1f3c9e2b6d
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "5d7e0c3a91b2"
down_revision: str | None = "7a1f3c9e2b6d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("console_role", sa.String(length=16), nullable=True))
    op.execute("UPDATE clients SET console_role = 'operator' WHERE is_admin")
    op.create_table(
        "console_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("client_id", sa.BigInteger(), nullable=True),
        sa.Column("client_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_console_audit_at", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_column("clients", "console_role")
