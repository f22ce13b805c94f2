"""dead job ledger

Revision ID: 9b39cb2de568
Revises: f03a1d9f9668
Create Date: 2026-11-27 05:20:58.711455
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "9b39cb2de568"
down_revision: str | None = "f03a1d9f9668"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("function", sa.String(length=100), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redriven_job_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_jobs")),
    )
    op.create_index(op.f("ix_dead_jobs_job_id"), "dead_jobs", ["job_id"], unique=False)
    op.create_index(op.f("ix_dead_jobs_order_id"), "dead_jobs", ["order_id"], unique=False)
    op.create_index(
        "ix_dead_jobs_pending",
        "dead_jobs",
        ["id"],
        unique=False,
        postgresql_where=sa.text("redriven_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_dead_jobs_pending",
        table_name="dead_jobs",
        postgresql_where=sa.text("redriven_at IS NULL"),
    )
    op.drop_index(op.f("ix_dead_jobs_order_id"), table_name="dead_jobs")
    op.drop_index(op.f("ix_dead_jobs_job_id"), table_name="dead_jobs")
    op.drop_table("dead_jobs")
