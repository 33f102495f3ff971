"""The audit log's ``entry_hash`` loses its unique index.

Nothing looks a record up by its hash, and the chain is checked by walking ``seq`` (``bastion audit verify``),
so the index only cost writes: its keys are random, so every record rewrote a page of it at a random place,
which SQLite's write-ahead log copies whole (4 KiB a record). Two gateways appending the same ``seq`` still
collide on the primary key. On SQLite the table is copied to drop the constraint (once, at the upgrade).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _table_before() -> sa.Table:
    """``audit_records`` as revisions 0002 and 0003 left it, so that the copy needs no reflection."""
    return sa.Table(
        "audit_records", sa.MetaData(),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.String(40), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("batch", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
        sa.UniqueConstraint("request_id", name="uq_audit_records_request_id"),
        sa.UniqueConstraint("entry_hash", name="uq_audit_records_entry_hash"),
        sa.Index("ix_audit_records_time", "time"),
        sa.Index("ix_audit_records_key_id", "key_id"),
    )


def upgrade() -> None:
    with op.batch_alter_table("audit_records", copy_from=_table_before()) as table:
        table.drop_constraint("uq_audit_records_entry_hash", type_="unique")


def downgrade() -> None:
    before = _table_before()
    before.constraints = {c for c in before.constraints if c.name != "uq_audit_records_entry_hash"}
    with op.batch_alter_table("audit_records", copy_from=before) as table:
        table.create_unique_constraint("uq_audit_records_entry_hash", ["entry_hash"])
