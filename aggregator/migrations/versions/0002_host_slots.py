"""host slots: per-host concurrency shared by every daemon on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import aggregator.store

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_slots",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("until", aggregator.store.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", "slot"),
    )


def downgrade() -> None:
    op.drop_table("host_slots")
