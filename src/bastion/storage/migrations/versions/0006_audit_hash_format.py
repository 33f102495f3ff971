"""Audit records say how their ``entry_hash`` was computed (``hash_format``; NULL for the records before).

The downgrade is refused once a record has a format: without the column its hash could no longer be checked.

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
    query = sa.text("SELECT COUNT(*) FROM audit_records WHERE hash_format IS NOT NULL")
    written = op.get_bind().execute(query).scalar()
    if written:
        raise RuntimeError(f"cannot downgrade below revision 0006: {written} audit records are hashed in a format that "
                           "only this column records, and would no longer verify; keep the schema, or archive the "
                           "audit log first")
    with op.batch_alter_table("audit_records") as table:
        table.drop_column("hash_format")
