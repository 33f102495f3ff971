"""Audit records name the batch a request shared its forward pass with (micro-batching).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as table:
        table.add_column(sa.Column("batch", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as table:
        table.drop_column("batch")
