"""Audit records say how their ``entry_hash`` was computed (``hash_format``; NULL for the records before).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as table:
        table.add_column(sa.Column("hash_format", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as table:
        table.drop_column("hash_format")
