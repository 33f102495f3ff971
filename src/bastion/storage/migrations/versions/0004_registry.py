"""The model registry (models, versions, artifacts, evidence, approvals, alias moves, roles) and incidents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_VERSION_FK = ("registry_versions.id",)


def _version_column() -> sa.Column:
    return sa.Column("version_id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "registry_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_models"),
        sa.UniqueConstraint("name", name="uq_registry_models_name"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("model_spec", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("threat_sha256", sa.String(64), nullable=True),
        sa.Column("threat_document", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["registry_models.id"], ondelete="RESTRICT",
                                name="fk_registry_versions_model_id_registry_models"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_versions"),
        sa.UniqueConstraint("model_id", "number", name="uq_registry_versions_number"),
    )
    op.create_index("ix_registry_versions_model_id", "registry_versions", ["model_id"])
    op.create_table(
        "registry_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        _version_column(),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=True),
        sa.Column("scan", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], _VERSION_FK, ondelete="RESTRICT",
                                name="fk_registry_artifacts_version_id_registry_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_artifacts"),
    )
    op.create_index("ix_registry_artifacts_version_id", "registry_artifacts", ["version_id"])
    op.create_table(
        "registry_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        _version_column(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attached_by", sa.String(200), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], _VERSION_FK, ondelete="RESTRICT",
                                name="fk_registry_evidence_version_id_registry_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_evidence"),
    )
    op.create_index("ix_registry_evidence_version_id", "registry_evidence", ["version_id"])
    op.create_table(
        "registry_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        _version_column(),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], _VERSION_FK, ondelete="RESTRICT",
                                name="fk_registry_approvals_version_id_registry_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_approvals"),
        sa.UniqueConstraint("version_id", "approver", name="uq_registry_approvals_version_id"),
    )
    op.create_index("ix_registry_approvals_version_id", "registry_approvals", ["version_id"])
    op.create_table(
        "registry_alias_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("moved_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["registry_models.id"], ondelete="RESTRICT",
                                name="fk_registry_alias_moves_model_id_registry_models"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_alias_moves"),
    )
    op.create_index("ix_registry_alias_moves_model_id", "registry_alias_moves", ["model_id"])
    op.create_table(
        "registry_roles",
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("actor", name="pk_registry_roles"),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_model", "incidents", ["model"])
    op.create_table(
        "incident_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="RESTRICT",
                                name="fk_incident_links_incident_id_incidents"),
        sa.PrimaryKeyConstraint("id", name="pk_incident_links"),
    )
    op.create_index("ix_incident_links_incident_id", "incident_links", ["incident_id"])


def downgrade() -> None:
    for table in ("incident_links", "incidents", "registry_roles", "registry_alias_moves", "registry_approvals",
                  "registry_evidence", "registry_artifacts", "registry_versions", "registry_models"):
        op.drop_table(table)
