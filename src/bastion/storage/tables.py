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
    entry_hash: Mapped[str] = mapped_column(String(HASH), unique=True)


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
