"""The model registry: versions of models with their artifacts, threat model, evidence, approvals and
aliases, in the database beside the datasets, every change a ledger entry.

A version is registered with the files it is made of (model file or factory, weights, the training
data's manifest, the threat model); each file is scanned for malicious pickle payloads (a file that
fails is refused), hashed, optionally signed with an ed25519 key, and kept in the object store, so a
later change to a stored file is detected (``verify``). Evidence records (the JSON of ``bastion scan``,
``data audit``, ``privacy``...) are attached to a version; a record of a kind that tests a model must name this
version's weights (or model file) by hash. Approval is refused while the version has no threat model, one without
gates, no evidence, or a failing or unanswered gate, and takes two approvers (``approvals_needed``), neither of
them the person who registered the version, each holding the ``approver`` or ``admin`` role. Only an approved
version whose gates still pass can be promoted to an alias (``production``, ``staging``...); ``rollback`` moves
an alias back to where it pointed before its last promotion.

People are names (``--as``, ``$BASTION_USER``), compared without case and surrounding spaces; they are not
authenticated, so the two-person rule guards against mistakes, not against one person typing two names.

Versions are named ``name:3`` (number) or ``name:production`` (an alias). A gateway serves only an alias of an
approved version (``ModelRegistry.released``), never a number.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.core.ids import file_digest
from bastion.governance.version_files import (
    artifact_row,
    check_audited_data,
    check_loads,
    check_manifest_file,
    check_not_future,
    check_tested_model,
    evidence_file,
    model_file,
    private_key,
    scan_file,
    signature_valid,
    threat_document,
)
from bastion.storage.database import Database, open_database
from bastion.storage.ledger import append, current_actor
from bastion.storage.objects import ObjectStore
from bastion.storage.tables import (
    AliasMoveRow,
    ApprovalRow,
    EvidenceRow,
    ModelVersionRow,
    RegisteredModelRow,
    RegistryRoleRow,
)

if TYPE_CHECKING:
    from bastion.governance.threat_model import ThreatDocument
    from bastion.models.loading import LoadedModel

Role = Literal["approver", "admin"]
ROLES: tuple[str, ...] = ("approver", "admin")
APPROVING_ROLES = frozenset(ROLES)


class ArtifactInfo(BaseModel):
    role: str
    name: str
    sha256: str
    size: int
    signed_by: str | None = Field(default=None, description="the signing key's id, when signed")
    scan_verdict: str | None = None


class EvidenceInfo(BaseModel):
    id: int
    kind: str
    source: str
    sha256: str
    attached_by: str
    attached_at: datetime


class VersionInfo(BaseModel):
    """One version as the CLI and the model card show it."""

    name: str
    number: int
    model_spec: str
    status: str
    created_at: datetime
    created_by: str
    note: str
    threat_sha256: str | None
    artifacts: list[ArtifactInfo]
    evidence: list[EvidenceInfo]
    approvers: list[str]
    aliases: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.number}"


class ApprovalOutcome(BaseModel):
    """An approval recorded: who has approved so far, how many are needed, and the gates it was given on."""

    ref: str
    approvers: list[str]
    needed: int
    approved: bool
    gates: list[dict[str, Any]]


@dataclass(frozen=True)
class _Ref:
    name: str
    selector: str | None  # a version number or an alias; None: the newest version

    @classmethod
    def parse(cls, text: str) -> _Ref:
        name, _, selector = str(text).partition(":")
        if not name.strip():
            raise InputError(f"{text!r} names no model: write NAME:VERSION (fraud-cnn:3) or NAME:ALIAS "
                             "(fraud-cnn:production)")
        return cls(name.strip(), selector.strip() or None)


class ModelRegistry:
    """Models in ``database`` (rows and ledger) and their files in ``objects`` (default ``<home>/objects``).

    Args:
        approvals_needed: distinct approvers a version needs (default 2, the two-person rule; at least 1).

    Methods take keyword-only options; ``actor=None`` means ``current_actor()`` (``--as``, ``$BASTION_USER``,
    the OS user name).
    """

    def __init__(self, database: Database, *, objects: ObjectStore | None = None, approvals_needed: int = 2) -> None:
        if approvals_needed < 1:
            raise InputError(f"approvals_needed must be at least 1, got {approvals_needed}")
        self.database = database
        self.objects = objects if objects is not None else ObjectStore(database.home / "objects")
        self.approvals_needed = approvals_needed

    def close(self) -> None:
        self.database.dispose()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------

    def models(self) -> list[str]:
        with self.database.sessions() as session:
            return list(session.scalars(select(RegisteredModelRow.name).order_by(RegisteredModelRow.name)))

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of model ``name``, oldest first."""
        with self.database.sessions() as session:
            model = _model(session, name)
            return [_info(session, row) for row in model.versions]

    def version(self, ref: str) -> VersionInfo:
        """The version ``ref`` names (``name:3``, ``name:production``, or ``name`` for the newest)."""
        with self.database.sessions() as session:
            return _info(session, _version(session, ref))

    def evidence(self, ref: str) -> list[dict[str, Any]]:
        """The evidence records attached to ``ref``, in the order attached."""
        with self.database.sessions() as session:
            return [row.document for row in _version(session, ref).evidence]

    def threat_document(self, ref: str) -> ThreatDocument | None:
        """The threat model ``ref`` was registered with, or ``None``."""
        from bastion.governance.threat_model import ThreatDocument

        with self.database.sessions() as session:
            stored = _version(session, ref).threat_document
        return None if stored is None else ThreatDocument.model_validate(stored)

    def artifact_path(self, ref: str, role: str) -> Path:
        """The stored copy of ``ref``'s artifact of ``role`` (``model``, ``weights``...), its hash checked."""
        with self.database.sessions() as session:
            version = _version(session, ref)
            row = next((a for a in version.artifacts if a.role == role), None)
            if row is None:
                roles = ", ".join(a.role for a in version.artifacts) or "none"
                raise InputError(f"{version.model.name}:{version.number} has no {role} artifact (it has: {roles})")
            digest = row.sha256
        self.objects.get_bytes(digest)  # raises when the stored bytes no longer match their hash
        return self.objects.path(digest)

    def released(self, ref: str) -> VersionInfo:
        """The version a gateway serves for ``ref``, which must be ``NAME:ALIAS`` (``fraud-cnn:production``).

        The rule: a gateway serves only a release, and a release is a version an alias points to. A version
        number (``fraud-cnn:1``) or a bare name is refused even when that version is approved, because approval
        is not release: promoting takes the approver or admin role and re-checks the gates on the evidence
        attached since the approval, an alias is what ``rollback`` moves (a gateway pinned to a number would not
        follow it), and a gateway serving a number would put a version in front of users that nobody promoted.
        The version the alias points to is checked to be approved as well (``promote`` only moves an alias to
        an approved version; this guards the rule, not against someone who can write the database).

        Raises:
            InputError: ``ref`` names a number or no alias, the alias is not set, or its version is not approved;
                each message says which ``bastion registry`` command releases a version.
        """
        problem = release_problem(ref)
        if problem is not None:
            raise InputError(problem)
        parsed = _Ref.parse(ref)
        alias = parsed.selector or ""  # release_problem refused a bare name
        with self.database.sessions() as session:
            model = _model(session, parsed.name)
            number = alias_target(session, model.name, alias)
            if number is None:
                raise InputError(f"{model.name}:{alias} is not set: no version was promoted to {alias!r}; "
                                 f"{_how_to_release(model.name, 'N', alias)}")
            version = _numbered(model, number)
            if version.status != "approved":
                raise InputError(f"{model.name}:{alias} points to version {number}, which is "
                                 f"{version.status}, not approved, so it is not served; two approvers run "
                                 f"`bastion registry approve {model.name}:{number}`, or promote an approved version")
            return _info(session, version)

    def load(self, ref: str) -> tuple[LoadedModel, VersionInfo]:
        """Load ``ref``'s model as ``bastion serve`` does: its factory with its weights, or its model file.
        Every stored file's hash and signature is checked first; the files are copied to
        ``<home>/serving/<sha256>/<name>`` (loaders know a format by its file name). Any version loads here,
        approved or not; what a gateway may serve is :meth:`released`.

        Raises:
            InputError: an artifact was changed or removed from the object store, or the model cannot load.
        """
        from bastion.models.loading import load_classifier

        info = self.version(ref)
        problems = self.verify(ref)
        if problems:
            raise InputError(f"{info.ref} will not load: {'; '.join(problems)}")
        files = {a.role: self._serving_copy(a) for a in info.artifacts if a.role in ("model", "weights")}
        weights = str(files["weights"]) if "weights" in files else None
        spec = str(files["model"]) if "model" in files else info.model_spec
        return load_classifier(spec, weights=weights), info

    def _serving_copy(self, artifact: ArtifactInfo) -> Path:
        target = self.database.home / "serving" / artifact.sha256 / artifact.name
        if not target.is_file() or file_digest(str(target)) != artifact.sha256:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.objects.path(artifact.sha256), target)
        return target

    def gates(self, ref: str) -> list[dict[str, Any]]:
        """The release gates of ``ref``: its threat model's gates evaluated on its evidence (newest record of
        each kind), as JSON-ready dicts with ``status`` ``pass``, ``fail`` or ``missing``."""
        with self.database.sessions() as session:
            return _gate_results(_version(session, ref))

    def verify(self, ref: str) -> list[str]:
        """What is wrong with ``ref``'s stored files: each artifact re-hashed from the object store and its
        signature checked. An empty list means intact."""
        with self.database.sessions() as session:
            version = _version(session, ref)
            artifacts = [(a.role, a.sha256, a.signature) for a in version.artifacts]
        problems = []
        for role, digest, signature in artifacts:
            try:
                self.objects.get_bytes(digest)
            except Exception as error:  # noqa: BLE001 - missing or corrupt: both are findings
                problems.append(f"{role}: {error}")
                continue
            if signature is not None and not signature_valid(digest, signature):
                problems.append(f"{role}: the ed25519 signature does not match the artifact's hash")
        return problems

    # --- changes ----------------------------------------------------------------------------------

    def register(self, name: str, *, model: str, weights: Path | None = None, data_manifest: Path | None = None,
                 threat: Path | None = None, sign_key: Path | None = None, note: str = "",
                 actor: str | None = None) -> VersionInfo:
        """Register a new version of ``name`` (created on first use).

        Args:
            model: a model file (stored as the ``model`` artifact) or a factory ``module:function`` (recorded).
            weights, data_manifest, threat: files stored as the ``weights``, ``data-manifest`` and ``threat``
                artifacts; the threat model is also validated and kept with the version for its gates.
            sign_key: an ed25519 private key (``bastion data keygen``) signing each artifact's hash.

        Raises:
            InputError: a missing file, an artifact the scanner flags, an invalid threat model.
        """
        actor = current_actor(actor)
        name = _checked_name(name)  # before any file is stored
        files = [(role, Path(path)) for role, path in (("model", model_file(model)), ("weights", weights),
                                                       ("data-manifest", data_manifest), ("threat", threat))
                 if path is not None]
        document = threat_document(threat) if threat is not None else None
        key = private_key(sign_key) if sign_key is not None else None
        for role, path in files:
            if not path.is_file():
                raise InputError(f"the {role} file {path} does not exist")
        if data_manifest is not None:
            check_manifest_file(Path(data_manifest))
        scans = {role: scan_file(path) for role, path in files}  # before anything loads them
        check_loads(model, weights)
        artifacts = [artifact_row(role, path, self.objects, key, scans[role]) for role, path in files]
        now = datetime.now(timezone.utc)
        with self.database.transaction() as session:
            registered = session.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
            if registered is None:
                registered = RegisteredModelRow(name=name, created_at=now, created_by=actor)
                session.add(registered)
                session.flush()
            number = (session.scalar(select(func.max(ModelVersionRow.number))
                                     .where(ModelVersionRow.model_id == registered.id)) or 0) + 1
            version = ModelVersionRow(model=registered, number=number, model_spec=str(model), created_at=now,
                                      created_by=actor, status="registered", note=note, artifacts=artifacts,
                                      threat_sha256=None if document is None else document.sha256(),
                                      threat_document=None if document is None else document.model_dump(mode="json"))
            session.add(version)
            session.flush()
            append(session, action="registry.register", subject=f"model:{name}:{number}", actor=actor,
                   payload={"model": str(model), "artifacts": {a.role: a.sha256 for a in artifacts},
                            "threat": version.threat_sha256})
            return _info(session, version)

    def attach(self, ref: str, files: list[Path], *, actor: str | None = None) -> VersionInfo:
        """Attach evidence records (JSON files with a ``kind``, as bastion's commands write them) to ``ref``.

        All or nothing, one ledger entry naming every record attached. A file whose content (SHA-256) is
        attached to ``ref`` already, or named twice, is refused and nothing is attached: a second copy of a
        record adds nothing to the gates (the newest record of a kind by its own ``created_at`` decides, not
        when it was attached), and the evidence list and the ledger keep one entry per record.

        Raises:
            InputError: a missing or invalid file, a record already attached, one that does not name this
                version's model or data, one dated in the future.
        """
        actor = current_actor(actor)
        records = [evidence_file(Path(path)) for path in files]
        if not records:
            raise InputError("name at least one evidence file (the JSON of bastion scan, data audit, privacy...)")
        now = datetime.now(timezone.utc)
        for path, _, document in records:
            check_not_future(path, document, now)
        with self.database.transaction() as session:
            version = _version(session, ref)
            _check_not_attached(version, records)
            for path, _, document in records:
                check_tested_model(version, path, document)
                check_audited_data(version, path, document, self.objects)
            for path, digest, document in records:
                version.evidence.append(EvidenceRow(kind=document["kind"], sha256=digest, source=path.name,
                                                    attached_at=now, attached_by=actor, document=document))
            session.flush()
            append(session, action="registry.attach", subject=_subject(version), actor=actor,
                   payload={"evidence": [{"kind": d["kind"], "sha256": h, "source": p.name} for p, h, d in records]})
            return _info(session, version)

    def grant(self, who: str, role: Role, *, actor: str | None = None) -> None:
        """Give ``who`` the ``approver`` or ``admin`` role. A registry's first grant must make an admin (anyone
        may make it: it sets the registry up); after that only an admin may grant."""
        actor = current_actor(actor)
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not who or not who.strip():
            raise InputError("name who gets the role")
        who = who.strip()
        with self.database.transaction() as session:
            holders = session.scalar(select(func.count()).select_from(RegistryRoleRow))
            if not holders and role != "admin":
                raise InputError(f"this registry has no admin yet: its first grant must make one (`bastion registry "
                                 f"grant {actor} admin --as {actor}`); the admin then grants {who} the {role} role")
            if holders and _role(session, actor) != "admin":
                raise InputError(f"{actor} is not a registry admin; only an admin can grant roles")
            rows = _role_rows(session, who)  # every spelling of the name (one, unless stored before names were folded)
            if _role(session, who) == "admin" and role != "admin" and _admins(session) == 1:
                raise InputError(f"{who} is the registry's only admin; making them {role} would leave nobody able to "
                                 "grant roles: make another admin first")
            now = datetime.now(timezone.utc)
            if not rows:
                session.add(RegistryRoleRow(actor=who, role=role, granted_at=now, granted_by=actor))
            for row in rows:
                row.role, row.granted_at, row.granted_by = role, now, actor
            name = rows[0].actor if rows else who  # the name as first granted, so the ledger's subjects agree
            append(session, action="registry.grant", subject=f"actor:{name}", actor=actor, payload={"role": role})

    def approve(self, ref: str, *, comment: str = "", actor: str | None = None) -> ApprovalOutcome:
        """Record ``actor``'s approval of ``ref``; it becomes ``approved`` with ``approvals_needed`` approvers.

        Raises:
            InputError: the actor holds no approving role, registered the version, or approved it already;
                the version has no threat model or no evidence; a gate fails or has no evidence.
        """
        actor = current_actor(actor)
        with self.database.transaction() as session:
            version = _version(session, ref)
            _check_approver(session, version, actor)
            gates = _gate_results(version)
            _check_gates(version, gates)
            version.approvals.append(ApprovalRow(approver=actor, approved_at=datetime.now(timezone.utc),
                                                 comment=comment, gates=gates))
            approvers = [a.approver for a in version.approvals]
            if len(approvers) >= self.approvals_needed:
                version.status = "approved"
            session.flush()
            append(session, action="registry.approve", subject=_subject(version), actor=actor,
                   payload={"comment": comment, "approvers": approvers, "status": version.status,
                            "gates": [{k: g.get(k) for k in ("gate", "status", "value")} for g in gates]})
            return ApprovalOutcome(ref=f"{version.model.name}:{version.number}", approvers=approvers,
                                   needed=self.approvals_needed, approved=version.status == "approved", gates=gates)

    def promote(self, ref: str, *, alias: str = "production", actor: str | None = None) -> VersionInfo:
        """Point ``alias`` of the model at ``ref`` (an approved version)."""
        actor = current_actor(actor)
        alias = _checked_alias(alias)
        with self.database.transaction() as session:
            _check_releaser(session, actor, "promote")
            version = _version(session, ref)
            if version.status != "approved":
                raise InputError(f"{_subject(version)[6:]} is {version.status}, not approved: only an approved "
                                 f"version can become {alias} (see `bastion registry approve`)")
            try:  # evidence attached since the approval counts: the newest record of each kind decides
                _check_gates(version, _gate_results(version))
            except InputError as error:
                raise InputError(f"{error}. It was approved before; evidence attached since then changed that, "
                                 "so it is not promoted") from None
            if alias_target(session, version.model.name, alias) == version.number:
                raise InputError(f"{version.model.name}:{alias} is version {version.number} already")
            _move(session, version.model, alias, version.number, "promote", actor)
            return _info(session, version)

    def rollback(self, name: str, *, alias: str = "production", actor: str | None = None) -> VersionInfo:
        """Point ``alias`` back at the version it named before its last promotion."""
        actor = current_actor(actor)
        if ":" in name:  # NAME:ALIAS, as every other command names a version
            name, alias = name.split(":", 1)
        alias = _checked_alias(alias)
        with self.database.transaction() as session:
            _check_releaser(session, actor, "roll back")
            model = _model(session, name)
            stack = _alias_stack(session, model, alias)
            if len(stack) < 2:
                where = f"at version {stack[-1]}" if stack else "unset"
                raise InputError(f"{name}:{alias} is {where} and has no earlier version to roll back to")
            _move(session, model, alias, stack[-2], "rollback", actor)
            return _info(session, _numbered(model, stack[-2]))


def open_registry(home: str | Path | None = None, *, url: str | None = None, create: bool = True,
                  approvals_needed: int = 2) -> ModelRegistry:
    """A ``ModelRegistry`` on the database at ``url`` (default: the one in ``home``) and ``<home>/objects``."""
    return ModelRegistry(open_database(url, home=home, create=create), approvals_needed=approvals_needed)


def release_problem(ref: str) -> str | None:
    """What is wrong with ``ref`` as what a gateway serves (``NAME:ALIAS``, the alias not a version number), or
    ``None``; the form only (:meth:`ModelRegistry.released` also checks the alias is set). See
    :meth:`ModelRegistry.released` for why a version number is refused."""
    text = str(ref).strip()
    name, _, selector = text.partition(":")
    name, selector = name.strip(), selector.strip()
    if text.count(":") != 1 or not name or not selector:
        return f"{ref!r}: name a registry alias as NAME:ALIAS, e.g. fraud-cnn:production"
    if _is_number(selector.lstrip("v")):
        number = selector.lstrip("v")
        return (f"{text} names version {number}, not an alias: a gateway serves only a released version, through "
                f"the alias it was promoted to (e.g. {name}:production); {_how_to_release(name, number, 'production')}")
    return None


def _how_to_release(name: str, number: str, alias: str) -> str:
    return (f"to release a version, two approvers run `bastion registry approve {name}:{number}`, then an approver "
            f"runs `bastion registry promote {name}:{number} --to {alias}`")


def alias_target(session: Session, name: str, alias: str) -> int | None:
    """The version number ``name:alias`` points at, or ``None`` (for the gateway's watcher)."""
    model = session.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
    if model is None:
        return None
    stack = _alias_stack(session, model, alias)
    return stack[-1] if stack else None


# --- lookups -----------------------------------------------------------------------------------------


def _model(session: Session, name: str) -> RegisteredModelRow:
    name = name.strip()
    row = session.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
    if row is None:
        known = ", ".join(session.scalars(select(RegisteredModelRow.name))) or "none yet"
        raise InputError(f"no model {name!r} in the registry (registered: {known}); `bastion registry register` "
                         "adds one")
    return row


def _version(session: Session, ref: str) -> ModelVersionRow:
    parsed = _Ref.parse(ref)
    model = _model(session, parsed.name)
    if not model.versions:
        raise InputError(f"model {parsed.name!r} has no versions")
    if parsed.selector is None:
        return model.versions[-1]
    if _is_number(parsed.selector.lstrip("v")):
        return _numbered(model, int(parsed.selector.lstrip("v")))
    number = alias_target(session, parsed.name, parsed.selector)
    if number is None:
        raise InputError(f"{parsed.name} has no version {parsed.selector!r}: name a number (1..{len(model.versions)})"
                         " or an alias it has been promoted to")
    return _numbered(model, number)


def _numbered(model: RegisteredModelRow, number: int) -> ModelVersionRow:
    for row in model.versions:
        if row.number == number:
            return row
    raise InputError(f"{model.name} has no version {number}; its versions are 1..{len(model.versions)}")


def _alias_stack(session: Session, model: RegisteredModelRow, alias: str) -> list[int]:
    """The versions ``alias`` went through, promotions pushed and rollbacks popped; the last is current."""
    stack: list[int] = []
    moves = session.scalars(select(AliasMoveRow).where(AliasMoveRow.model_id == model.id, AliasMoveRow.alias == alias)
                            .order_by(AliasMoveRow.id))
    for move in moves:
        if move.action == "rollback" and stack:
            stack.pop()
        else:
            stack.append(move.version_number)
    return stack


def _move(session: Session, model: RegisteredModelRow, alias: str, number: int, action: str, actor: str) -> None:
    previous = alias_target(session, model.name, alias)
    session.add(AliasMoveRow(model_id=model.id, alias=alias, version_number=number, action=action,
                             moved_at=datetime.now(timezone.utc), moved_by=actor))
    session.flush()
    append(session, action=f"registry.{action}", subject=f"model:{model.name}", actor=actor,
           payload={"alias": alias, "from": previous, "to": number})


def _aliases(session: Session, version: ModelVersionRow) -> list[str]:
    names = session.scalars(select(AliasMoveRow.alias).where(AliasMoveRow.model_id == version.model_id).distinct())
    return sorted(a for a in names if alias_target(session, version.model.name, a) == version.number)


def _info(session: Session, row: ModelVersionRow) -> VersionInfo:
    return VersionInfo(
        name=row.model.name, number=row.number, model_spec=row.model_spec, status=row.status,
        created_at=row.created_at, created_by=row.created_by, note=row.note, threat_sha256=row.threat_sha256,
        artifacts=[ArtifactInfo(role=a.role, name=a.name, sha256=a.sha256, size=a.size,
                                signed_by=(a.signature or {}).get("key_id"),
                                scan_verdict=(a.scan or {}).get("verdict")) for a in row.artifacts],
        evidence=[EvidenceInfo(id=e.id, kind=e.kind, source=e.source, sha256=e.sha256, attached_by=e.attached_by,
                               attached_at=e.attached_at) for e in row.evidence],
        approvers=[a.approver for a in row.approvals], aliases=_aliases(session, row))


def _subject(version: ModelVersionRow) -> str:
    return f"model:{version.model.name}:{version.number}"


# --- approval ------------------------------------------------------------------------------------------


def _role_rows(session: Session, name: str) -> list[RegistryRoleRow]:
    """The role rows of the person ``name``, matched as :func:`_same_person` does (case and surrounding spaces
    aside), oldest grant first. The table is keyed by the name as first granted, so this reads it whole (a
    few rows: the people who release models) rather than adding a folded column; rows stored before names were
    folded (``Alice`` and ``alice``) are all found and a grant updates them together."""
    rows = session.scalars(select(RegistryRoleRow).order_by(RegistryRoleRow.granted_at, RegistryRoleRow.actor))
    return [row for row in rows if _same_person(row.actor, name)]


def _role(session: Session, name: str) -> str | None:
    """The role ``name`` holds (``admin`` over ``approver`` where old rows of several spellings disagree)."""
    roles = {row.role for row in _role_rows(session, name)}
    return "admin" if "admin" in roles else next(iter(roles), None)


def _check_releaser(session: Session, actor: str, what: str) -> None:
    if _role(session, actor) not in APPROVING_ROLES:
        raise InputError(f"{actor} may not {what}: moving an alias takes the approver or admin role (an admin grants "
                         "it with `bastion registry grant NAME approver`)")


def _check_approver(session: Session, version: ModelVersionRow, actor: str) -> None:
    if _role(session, actor) not in APPROVING_ROLES:
        raise InputError(f"{actor} may not approve: approvers hold the approver or admin role (an admin grants it "
                         "with `bastion registry grant NAME approver`)")
    if _same_person(actor, version.created_by):
        raise InputError(f"{actor} registered {_subject(version)[6:]} and may not approve it: a second person must")
    if any(_same_person(a.approver, actor) for a in version.approvals):
        raise InputError(f"{actor} approved {_subject(version)[6:]} already; it needs another approver")


def _check_not_attached(version: ModelVersionRow, records: list[tuple[Path, str, dict[str, Any]]]) -> None:
    attached = {row.sha256: row for row in version.evidence}
    named: dict[str, Path] = {}
    for path, digest, _ in records:
        if digest in attached:
            row = attached[digest]
            raise InputError(f"{path} is already attached to {_subject(version)[6:]} (evidence {row.id}, {row.source}, "
                             f"the same sha256 {digest[:12]}): nothing attached; leave it out")
        if digest in named:
            raise InputError(f"{path} and {named[digest]} are the same record (sha256 {digest[:12]}): nothing "
                             "attached; name it once")
        named[digest] = path


def _gate_results(version: ModelVersionRow) -> list[dict[str, Any]]:
    if version.threat_document is None:
        return []
    from bastion.governance.gates import evaluate_gates
    from bastion.governance.threat_model import ThreatDocument

    document = ThreatDocument.model_validate(version.threat_document)  # stored validated at registration
    results = evaluate_gates(document, [e.document for e in version.evidence])
    return [result.model_dump(mode="json") for result in results]


def _check_gates(version: ModelVersionRow, gates: list[dict[str, Any]]) -> None:
    ref = _subject(version)[6:]
    if version.threat_document is None:
        raise InputError(f"{ref} has no threat model, so it has no release gates: register a version with "
                         "--threat (`bastion threat init` writes one)")
    if not gates:
        raise InputError(f"{ref}'s threat model has no release gates (no `requires:` under any attack path), so "
                         "nothing shows it is fit to release: add gates and register a new version")
    if not version.evidence:
        raise InputError(f"{ref} has no evidence attached: attach the records its gates need with "
                         "`bastion registry attach`")
    open_gates = [g for g in gates if g.get("status") != "pass"]
    if open_gates:
        lines = "; ".join(f"{g.get('description') or g.get('gate')}: {g.get('status')}"
                          + (f" ({g['reason']})" if g.get("reason") else "") for g in open_gates)
        raise InputError(f"{ref} fails {len(open_gates)} of {len(gates)} release gate(s): {lines}")


#: A model's name: it is served at ``/v2/models/{name}``, so one URL path segment needing no escaping.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _checked_name(name: str) -> str:
    stripped = (name or "").strip()
    if not MODEL_NAME.fullmatch(stripped):
        raise InputError(f"model name {name!r}: use 1-200 ASCII letters, digits, '.', '_' and '-', starting with a "
                         "letter or digit (e.g. fraud-cnn): the name is served at /v2/models/NAME")
    return stripped


def _checked_alias(alias: str) -> str:
    stripped = (alias or "").strip()
    if not stripped or _is_number(stripped.lstrip("v")) or ":" in stripped or len(stripped) > 64:
        raise InputError(f"alias {alias!r}: use a name such as production or staging (not a number, no ':')")
    return stripped


def _is_number(text: str) -> bool:
    """Whether ``text`` is a version number: ASCII digits only (``str.isdigit`` accepts '²', which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _same_person(first: str, second: str) -> bool:
    """Names as people type them: case and surrounding spaces aside (not authentication: see the module docstring)."""
    return first.strip().casefold() == second.strip().casefold()


def _admins(session: Session) -> int:
    """How many people hold the admin role (names folded: ``Root`` and ``root`` are one)."""
    names = session.scalars(select(RegistryRoleRow.actor).where(RegistryRoleRow.role == "admin"))
    return len({name.strip().casefold() for name in names})
