"""notice lines: the lines of an entry's bodies where a rights notice may stand

Made when the entry is parsed, so publishing need not turn every body into text again.
Entries stored before have none (NULL): their bodies are read, as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("notice_lines", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("notice_lines")
