"""Ensemble manifests: a YAML or JSON file that names member models, so that ``--model ensemble.yaml`` loads
their :class:`~bastion.defenses.ensemble.EnsembleClassifier` wherever a model is accepted (scan, certify,
harden's before/after scans, the gateway).

A manifest (paths relative to the manifest's folder)::

    ensemble:
      combine: logits              # or probabilities (the default): how the members' scores are averaged
      members:
        - model: bastion.models.zoo:fashion_wide_cnn
          weights: trades4/model.safetensors
        - model: trades5.onnx
          weight: 2.0              # its share of the average (default 1; normalised over the members)

Members are any model spec but an endpoint or another manifest. The ensemble's ``sha256`` hashes the
combination and every member's file hash (``None`` when a member has no file), so evidence records name the
members' contents, not their paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.core.errors import InputError

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


class _Member(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    weights: str | None = None
    weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)


class _Ensemble(BaseModel):
    model_config = ConfigDict(extra="forbid")

    combine: Literal["probabilities", "logits"] = "probabilities"
    members: list[_Member] = Field(min_length=1)


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ensemble: _Ensemble


def read_manifest(path: Path) -> _Ensemble:
    """The manifest's ``ensemble`` section, checked.

    Raises:
        InputError: a file that is not YAML/JSON, or whose content breaks the schema (the message names the field).
    """
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise InputError(f"{path}: not a readable ensemble manifest ({error})") from None
    try:
        return _Manifest.model_validate(document).ensemble
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'the file'}: {e['msg']}"
                             for e in error.errors())
        raise InputError(f"{path}: not a valid ensemble manifest ({problems}). It needs "
                         "'ensemble: {members: [{model: ..., weights: ...}, ...]}'") from None


def load_ensemble(path: Path, load_member: Callable[[str, str | None], Any]) -> Any:
    """The :class:`~bastion.models.loading.LoadedModel` of the manifest at ``path``.

    Args:
        path: the manifest.
        load_member: ``(spec, weights) -> LoadedModel`` for one member (paths already resolved).

    Raises:
        InputError: a bad manifest, a member that is an endpoint or a manifest, members that disagree on
            input shape, classes or bounds, or weights that are all zero.
    """
    from bastion.defenses.ensemble import EnsembleClassifier
    from bastion.models.loading import LoadedModel

    manifest = read_manifest(path)
    loaded = []
    for index, member in enumerate(manifest.members):
        spec = member.model
        if spec.lower().startswith(("http://", "https://")) or Path(spec).suffix.lower() in MANIFEST_SUFFIXES:
            raise InputError(f"{path}: member {index} ({spec}) is an endpoint or a manifest; an ensemble's "
                             "members must be model files or factories")
        weights = None if member.weights is None else _resolve(path.parent, member.weights)
        loaded.append(load_member(_resolve(path.parent, spec), weights))
    shares = [member.weight for member in manifest.members]
    classifier = EnsembleClassifier([m.classifier for m in loaded], combine=manifest.combine, weights=shares)
    description = f"ensemble {path} ({manifest.combine}): " + "; ".join(m.description for m in loaded)
    return LoadedModel(classifier, description, _digest(manifest.combine, classifier.weights, loaded), "ensemble")


def _resolve(folder: Path, spec: str) -> str:
    """A relative file path against the manifest's folder; factories (``pkg.module:factory``) as they are."""
    from bastion.models.loading import is_factory_spec

    candidate = Path(spec).expanduser()
    resolved = candidate if candidate.is_absolute() else folder / candidate
    return spec if is_factory_spec(spec) and not resolved.exists() else str(resolved)


def _digest(combine: str, shares: list[float], loaded: list[Any]) -> str | None:
    hashes = [m.sha256 for m in loaded]
    if any(h is None for h in hashes):
        return None
    content = json.dumps({"combine": combine, "members": [{"sha256": h, "share": s} for h, s in zip(
        hashes, shares, strict=True)]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()
