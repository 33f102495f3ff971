"""The files of a registered version: checking them (the artifact scanner, loading the model once,
evidence that names the model it tested), storing them in the object store, and signing their hashes
with ed25519. ``bastion.governance.registry`` calls these; nothing here touches the database.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.core.errors import BastionError, InputError
from bastion.core.ids import file_digest
from bastion.storage.objects import ObjectStore
from bastion.storage.tables import ModelArtifactRow, ModelVersionRow


def model_file(model: str) -> Path | None:
    """The model file ``--model`` names, or ``None`` for a factory (``module:function``). An ensemble manifest is
    refused: a version holds one model file (or one weights file), and a manifest's members are files of their own."""
    from bastion.models.ensemble_spec import MANIFEST_SUFFIXES
    from bastion.models.loading import is_factory_spec

    path = Path(model)
    if path.is_file():
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            raise InputError(f"--model {model} is an ensemble manifest; the registry stores one model file per "
                             "version. Register each member (with its --weights) as a version of its own")
        return path
    if is_factory_spec(model):
        return None
    raise InputError(f"--model {model!r} is neither a file nor a factory 'module:function'")


#: Where each kind of evidence record names the model it tested (``ArtifactRef``); other kinds test data.
TESTED_MODEL_FIELD = {"scan": "model", "defense-scan": "model", "certify": "model", "privacy": "model",
                      "extraction": "model", "harden": "model_after"}


def check_tested_model(version: ModelVersionRow, path: Path, document: dict[str, Any]) -> None:
    """Refuse a record of a kind that tests a model unless it names, by hash, this version's weights (or model file):
    a record naming another model, none, or a version with no weights or model file to compare with."""
    field = TESTED_MODEL_FIELD.get(document.get("kind", ""))
    if field is None:
        return
    tested = document.get(field)
    tested = tested.get("sha256") if isinstance(tested, dict) else None
    files = {a.role: a.sha256 for a in version.artifacts}
    own = files.get("weights") or files.get("model")
    ref = f"{version.model.name}:{version.number}"
    if own is None:
        raise InputError(f"{ref} was registered as a factory without --weights, so no {document['kind']} record can "
                         "show that it tested this version's model: register a version with its --weights")
    if not isinstance(tested, str) or not tested:
        raise InputError(f"{path} does not name the model it tested ({field}.sha256 is missing), so it cannot count "
                         f"for {ref}: attach the record as the bastion command wrote it")
    if tested != own:
        raise InputError(f"{path} tested the model file {tested[:16]}…, but {ref}'s "
                         f"{'weights' if 'weights' in files else 'model file'} are {own[:16]}…: attach evidence "
                         "produced with this version's files")


def check_audited_data(version: ModelVersionRow, path: Path, document: dict[str, Any], objects: ObjectStore) -> None:
    """Refuse a data audit of other data than the version's ``--data-manifest`` (by Merkle root), when it has one."""
    if document.get("kind") != "audit":
        return
    stored = next((a.sha256 for a in version.artifacts if a.role == "data-manifest"), None)
    if stored is None:
        return  # nothing to compare with: the version was registered without its data's manifest
    from bastion.data.manifest import Manifest

    expected = Manifest.model_validate_json(objects.get_bytes(stored)).merkle_root
    data = document.get("data")
    audited = data.get("manifest_root") if isinstance(data, dict) else None
    ref = f"{version.model.name}:{version.number}"
    if audited != expected:
        seen = f"data with Merkle root {audited[:16]}…" if isinstance(audited, str) and audited else \
            "data without a manifest root (a built-in or in-memory dataset)"
        raise InputError(f"{path} audited {seen}, but {ref}'s --data-manifest has root {expected[:16]}…: audit "
                         "the training data the version was registered with")


def check_manifest_file(path: Path) -> None:
    """Refuse a ``--data-manifest`` that is not a readable dataset manifest."""
    from bastion.data.manifest import read_manifest

    read_manifest(path)


#: How far in the future a record's ``created_at`` may lie (clocks of two machines differ a little).
CLOCK_SKEW = timedelta(minutes=5)


def check_not_future(path: Path, document: dict[str, Any], now: datetime) -> None:
    """Refuse a record dated in the future: of several records of a kind, the newest ``created_at`` decides a gate,
    so a future date would let a stale record outrank every later one."""
    from bastion.governance.gates import created_at

    when = created_at(document)
    if when is not None and when > now + CLOCK_SKEW:
        raise InputError(f"{path} is dated {when.isoformat()}, in the future: attach the record as the bastion "
                         "command wrote it")


def check_loads(model: str, weights: Path | None) -> None:
    """Load the model once, so that a version that cannot be served is never registered."""
    from bastion.models.loading import load_classifier

    try:
        load_classifier(model, weights=None if weights is None else str(weights))
    except BastionError as error:
        raise InputError(f"the model does not load, so it was not registered: {error}") from None


def artifact_row(role: str, path: Path, objects: ObjectStore, key: Any | None, scan: dict[str, Any] | None
                  ) -> ModelArtifactRow:
    digest = objects.put_file(path)
    signature = None if key is None else _sign(digest, key)
    return ModelArtifactRow(role=role, name=path.name, sha256=digest, size=path.stat().st_size,
                            signature=signature, scan=scan)


def scan_file(path: Path) -> dict[str, Any] | None:
    """The artifact scanner's verdict on ``path``; refuses a file with a high or critical finding."""
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        return None  # manifests and threat models are data, validated where they are read
    from bastion.artifacts import scan_artifact

    result = scan_artifact(path)
    summary = json.loads(result.model_dump_json())
    if not result.safe:
        worst = [f for f in summary.get("findings", []) if f.get("severity") in ("critical", "high")]
        listed = "; ".join(f"{f.get('severity')}: {f.get('message')}" for f in worst[:5])
        raise InputError(f"{path} failed the artifact scan and was not registered: {listed}. Inspect it with "
                         f"`bastion artifact scan {path}`; prefer safetensors for weights")
    summary["verdict"] = "safe"
    return summary


def threat_document(path: Path):
    from bastion.governance.threat_model import load_threat_document

    return load_threat_document(path)


def private_key(path: Path):
    from bastion.data.signing import load_private_key

    return load_private_key(Path(path))


def _sign(digest: str, key: Any) -> dict[str, Any]:
    from bastion.data.signing import key_id, raw_public_key

    public = key.public_key()
    return {"algorithm": "ed25519", "key_id": key_id(public), "public_key": raw_public_key(public).hex(),
            "signature": key.sign(bytes.fromhex(digest)).hex()}


def signature_valid(digest: str, signature: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signature["public_key"]))
        public.verify(bytes.fromhex(signature["signature"]), bytes.fromhex(digest))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def evidence_file(path: Path) -> tuple[Path, str, dict[str, Any]]:
    """``path``, the SHA-256 of its bytes, and the evidence record it holds (``gates.load_evidence`` checks it)."""
    from bastion.governance.gates import load_evidence

    if path.is_dir():
        raise InputError(f"{path} is a folder; attach the .json record inside it (e.g. {path / 'scan.json'})")
    if not path.is_file():
        raise InputError(f"the evidence file {path} does not exist")
    return path, file_digest(str(path)), load_evidence(path)
