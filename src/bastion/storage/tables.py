"""ORM tables. Every schema change here needs a migration in ``storage/migrations/versions/``
(``tests/test_ledger.py`` checks that the migrations and these models agree).

Tables: the ledger (``ledger_entries``), datasets, their versions, and quarantined samples. Later
features (the model registry) add their tables to the same ``Base``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Constraint names that are stable across databases, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HASH = 64  # hex SHA-256


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LedgerEntry(Base):
    """One operation in the append-only, hash-chained ledger (see ``bastion.storage.ledger``).

    ``entry_hash`` is the SHA-256 of the canonical JSON of every other column but itself;
    ``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros for the first entry).
    """

    __tablename__ = "ledger_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    subject: Mapped[str] = mapped_column(String(500), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    entry_hash: Mapped[str] = mapped_column(String(HASH), unique=True)

    def __repr__(self) -> str:
        return f"LedgerEntry(seq={self.seq}, action={self.action!r}, subject={self.subject!r}, actor={self.actor!r})"


class DatasetRow(Base):
    """A dataset under version control: its name, where its working copy lives, its current version."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str] = mapped_column(Text, doc="absolute path of the working copy (a folder or one file)")
    format: Mapped[str] = mapped_column(String(32), doc="image-folder, npz, csv or parquet")
    current_version: Mapped[int | None] = mapped_column(Integer, doc="number of the current version")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    versions: Mapped[list[DatasetVersionRow]] = relationship(
        back_populates="dataset", order_by="DatasetVersionRow.number")


class DatasetVersionRow(Base):
    """One committed version: its manifest and file index (objects in the store), and who made it."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_number"),
        UniqueConstraint("dataset_id", "release_tag", name="uq_dataset_versions_release_tag"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), index=True)
    number: Mapped[int] = mapped_column(Integer, doc="1, 2, ... per dataset")
    manifest_object: Mapped[str] = mapped_column(String(HASH), doc="object hash of the manifest JSON")
    files_object: Mapped[str] = mapped_column(String(HASH), doc="object hash of the file index JSON")
    merkle_root: Mapped[str] = mapped_column(String(HASH))
    sample_count: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    parent: Mapped[int | None] = mapped_column(Integer, doc="number of the version this one was made from")
    status: Mapped[str] = mapped_column(String(32), doc="committed, released or rolled-back")
    release_tag: Mapped[str | None] = mapped_column(String(200))

    dataset: Mapped[DatasetRow] = relationship(back_populates="versions")
    quarantined: Mapped[list[QuarantinedSampleRow]] = relationship(back_populates="version")


class QuarantinedSampleRow(Base):
    """A sample taken out of a dataset: the version created without it, why, and who approved it."""

    __tablename__ = "quarantined_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="RESTRICT"), index=True)
    sample_id: Mapped[str] = mapped_column(String(HASH), index=True)
    label: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text, doc="where it was in the dataset: 'cat/001.png', 'row 18'")
    kept_at: Mapped[str] = mapped_column(Text, doc="where its bytes are kept, under <home>/quarantine/")
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    version: Mapped[DatasetVersionRow] = relationship(back_populates="quarantined")


# --- the gateway (bastion serve): API keys, the audit log of predictions, review cases -------------------


class ApiKeyRow(Base):
    """An API key of the gateway. Only a keyed hash of the secret is kept (``key_hash``), never the secret.

    ``scopes`` lists the model names the key may query (``["*"]``: every model). ``rate`` and ``budget`` are
    ``limits`` strings (``"100/minute"``, ``"50000/day"``); ``output`` is the key's output policy
    (``full``, ``top-k``, ``rounded``, ``label``; ``None``: the policy file's default).
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, doc="public id, 'key_' + 16 hex digits")
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), doc="client, reviewer or admin")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    key_hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    rate: Mapped[str | None] = mapped_column(String(64))
    budget: Mapped[str | None] = mapped_column(String(64))
    output: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditInputRow(Base):
    """The exact input array of logged requests, stored once per content hash (for replay and drift)."""

    __tablename__ = "audit_inputs"

    sha256: Mapped[str] = mapped_column(String(HASH), primary_key=True, doc="SHA-256 of dtype, shape and bytes")
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[int]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PolicyRow(Base):
    """A policy document the gateway ran under, by the SHA-256 of its canonical JSON (for replay)."""

    __tablename__ = "gateway_policies"

    sha256: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    document: Mapped[str] = mapped_column(Text, doc="canonical JSON of the policy")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRecordRow(Base):
    """One request to the gateway, append-only and hash-chained like the ledger.

    ``entry_hash`` is the SHA-256 of the canonical JSON of every other column but ``seq``'s storage
    details (see ``bastion.gateway.audit``); ``prev_hash`` is the previous record's ``entry_hash``.
    ``probabilities`` is what the model said (before the output policy), ``response`` what the client got.
    ``entry_hash`` has no index of its own (migration 0005): nothing looks records up by it, and an index
    on a random key costs the write-ahead log a page a record. ``hash_format`` says how the hashed fields were
    serialised (``bastion.gateway.audit.HASH_FORMATS``; NULL: the first format, as every record before 0006).
    """

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    model: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(HASH))
    policy_sha256: Mapped[str] = mapped_column(String(HASH))
    input_sha256: Mapped[str | None] = mapped_column(String(HASH))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, doc="detector scores per instance")
    probabilities: Mapped[list[Any] | None] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(20), doc="answer, flag, review, refuse or error")
    status: Mapped[int] = mapped_column(Integer, doc="HTTP status returned")
    review_id: Mapped[str | None] = mapped_column(String(40))
    batch: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="when the request shared a forward pass: the input hashes of the batch in order and its index")
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    entry_hash: Mapped[str] = mapped_column(String(HASH))
    hash_format: Mapped[int | None] = mapped_column(Integer, doc="how entry_hash serialised the record; NULL: 1")


class ReviewCaseRow(Base):
    """A request escalated to human review, and the reviewer's decision once made."""

    __tablename__ = "review_cases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, doc="'rev_' + 16 hex digits")
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    model: Mapped[str] = mapped_column(String(200))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), index=True, doc="pending, answered or refused")
    labels: Mapped[list[int] | None] = mapped_column(JSON, doc="the classes the reviewer chose, one per instance")
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RegisteredModelRow(Base):
    """A model under the registry: its versions and its aliases (``production``, ``staging``, ...)."""

    __tablename__ = "registry_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))

    versions: Mapped[list[ModelVersionRow]] = relationship(back_populates="model", order_by="ModelVersionRow.number")


class ModelVersionRow(Base):
    """One registered version: how to load it, its artifacts, threat model, evidence and approvals.

    ``status`` is ``registered`` until enough approvers approve it (``approved``).
    """

    __tablename__ = "registry_versions"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_registry_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id", ondelete="RESTRICT"), index=True)
    number: Mapped[int] = mapped_column(Integer, doc="1, 2, ... per model")
    model_spec: Mapped[str] = mapped_column(String(500), doc="the --model given: a factory or a model file's name")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))
    threat_sha256: Mapped[str | None] = mapped_column(String(HASH))
    threat_document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")

    model: Mapped[RegisteredModelRow] = relationship(back_populates="versions")
    artifacts: Mapped[list[ModelArtifactRow]] = relationship(back_populates="version", order_by="ModelArtifactRow.id")
    evidence: Mapped[list[EvidenceRow]] = relationship(back_populates="version", order_by="EvidenceRow.id")
    approvals: Mapped[list[ApprovalRow]] = relationship(back_populates="version", order_by="ApprovalRow.id")


class ModelArtifactRow(Base):
    """A file of a version (model, weights, data manifest, threat model), stored in the object store."""

    __tablename__ = "registry_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("registry_versions.id", ondelete="RESTRICT"), index=True)
    role: Mapped[str] = mapped_column(String(32), doc="model, weights, data-manifest or threat")
    name: Mapped[str] = mapped_column(String(500), doc="the file's name as registered")
    sha256: Mapped[str] = mapped_column(String(HASH), doc="also its id in the object store")
    size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="ed25519: key_id, signer, signature (hex)")
    scan: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="the artifact scanner's verdict and findings")

    version: Mapped[ModelVersionRow] = relationship(back_populates="artifacts")


class EvidenceRow(Base):
    """An evidence record (scan, audit, privacy... JSON) attached to a version."""

    __tablename__ = "registry_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("registry_versions.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(HASH), doc="of the record's file as attached")
    source: Mapped[str] = mapped_column(String(500), doc="the file's name as attached")
    attached_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attached_by: Mapped[str] = mapped_column(String(200))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)

    version: Mapped[ModelVersionRow] = relationship(back_populates="evidence")


class ApprovalRow(Base):
    """One approver's approval of a version, with the gates as they stood."""

    __tablename__ = "registry_approvals"
    __table_args__ = (UniqueConstraint("version_id", "approver", name="uq_registry_approvals_version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("registry_versions.id", ondelete="RESTRICT"), index=True)
    approver: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str] = mapped_column(Text, default="")
    gates: Mapped[list[Any]] = mapped_column(JSON)

    version: Mapped[ModelVersionRow] = relationship(back_populates="approvals")


class AliasMoveRow(Base):
    """A move of an alias to a version (promote or rollback); the newest move of an alias is where it points."""

    __tablename__ = "registry_alias_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id", ondelete="RESTRICT"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version_number: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16), doc="promote or rollback")
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    moved_by: Mapped[str] = mapped_column(String(200))


class RegistryRoleRow(Base):
    """Who may approve versions (``approver``) and grant roles (``admin``)."""

    __tablename__ = "registry_roles"

    actor: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(200))


class IncidentRow(Base):
    """Something that went wrong with a served model: opened, linked to what it touched, closed with a
    resolution."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    version_number: Mapped[int | None] = mapped_column(Integer, doc="the version it was opened on, if one")
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), doc="open or closed")
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_by: Mapped[str] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(200))

    links: Mapped[list[IncidentLinkRow]] = relationship(back_populates="incident", order_by="IncidentLinkRow.id")


class IncidentLinkRow(Base):
    """What an incident touched: a request (audit log), a model version, or an action taken."""

    __tablename__ = "incident_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="request, version or action")
    target: Mapped[str] = mapped_column(String(500), doc="a request id, NAME:NUMBER, or the action in words")
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    linked_by: Mapped[str] = mapped_column(String(200))

    incident: Mapped[IncidentRow] = relationship(back_populates="links")
