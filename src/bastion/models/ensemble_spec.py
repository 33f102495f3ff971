"""Ensemble manifests: a YAML or JSON file that names member models, so that ``--model ensemble.yaml`` loads
their :class:`~bastion.defenses.ensemble.EnsembleClassifier` where a model is scanned, certified, audited or
served (not where one is trained: harden each member, then list the hardened members).

A manifest (relative paths are read from the folder of the manifest's real file, symbolic links followed)::

    ensemble:
      combine: logits              # or probabilities (the default): how the members' scores are averaged
      members:
        - model: bastion.models.zoo:fashion_wide_cnn
          weights: trades4/model.safetensors
        - model: trades5.onnx
          share: 2.0               # its part of the average (default 1; normalised over the members): a
                                   # finite number from 0 (member left out) to 1e6, not all 0

Members are any model spec but an endpoint or another manifest. A factory member imports and runs code, as
``--model pkg.module:factory`` does: load only manifests you trust. The ensemble's ``sha256`` hashes the
combination, the shares and every member's file hash, in order (``None`` when a member has no file), so evidence
records name the members' contents, not their paths.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.core.errors import BastionError, InputError, validation_problems
from bastion.core.yamlio import load_yaml

if TYPE_CHECKING:
    from bastion.models.loading import LoadedModel

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
#: The largest share a member may have (shares are normalised; a bound keeps their sum finite).
MAX_SHARE = 1e6
#: A number with an exponent, which YAML 1.1 reads as text unless it has a dot and a signed exponent.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


class ManifestMember(BaseModel):
    """One member: a model spec, its weights file (for a factory) and its share of the average."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    weights: str | None = None
    share: float = 1.0

    @field_validator("share", mode="before")
    @classmethod
    def _share_written_with_an_exponent(cls, value: object) -> object:
        """YAML 1.1 (PyYAML) reads ``1e7`` and ``1.5e3`` as text: say how to write them as numbers."""
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            raise ValueError(f"{value!r} was read as text, not a number: in YAML write {_yaml_number(value)} (a "
                             "number with an exponent needs a dot and a signed exponent, such as 1.0e+7)")
        return value

    @field_validator("share")
    @classmethod
    def _finite_share(cls, value: float) -> float:
        """One message for every bad share (NaN, infinite, negative, too large) that says what a share is."""
        if not math.isfinite(value) or not 0.0 <= value <= MAX_SHARE:
            raise ValueError(f"a share must be a finite number from 0 to {MAX_SHARE:,.0f} (0 leaves the member out; "
                             f"shares are normalised over the members), got {value}")
        return value


def _yaml_number(text: str) -> str:
    """``text``, a number, as YAML 1.1 reads a float: in full, or with a dot and a signed exponent."""
    spelled = repr(float(text))
    mantissa, _, exponent = spelled.partition("e")
    return spelled if not exponent or "." in mantissa else f"{mantissa}.0e{exponent}"


class EnsembleManifest(BaseModel):
    """A manifest's ``ensemble`` section."""

    model_config = ConfigDict(extra="forbid", strict=True)

    combine: Literal["probabilities", "logits"] = "probabilities"
    members: list[ManifestMember] = Field(min_length=1)

    @model_validator(mode="after")
    def _some_share(self) -> EnsembleManifest:
        if all(member.share == 0 for member in self.members):
            raise ValueError("every member has share 0; give at least one member a share above 0")
        return self


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ensemble: EnsembleManifest


def read_manifest(path: Path) -> EnsembleManifest:
    """The manifest's ``ensemble`` section, checked.

    Raises:
        InputError: a file that is not YAML/JSON, or whose content breaks the schema (the message names the field).
    """
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        raise InputError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', None) or error})") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: not a readable ensemble manifest ({error})") from None
    try:
        return _Document.model_validate(document).ensemble
    except ValidationError as error:
        raise InputError(f"{path}: not a valid ensemble manifest ({validation_problems(error)}). It needs "
                         "'ensemble: {members: [{model: ..., weights: ...}, ...]}'") from None


def load_ensemble(path: Path, load_member: Callable[[str, str | None], LoadedModel]) -> LoadedModel:
    """The :class:`~bastion.models.loading.LoadedModel` of the manifest at ``path``.

    Args:
        path: the manifest.
        load_member: ``(spec, weights) -> LoadedModel`` for one member (relative paths already resolved).

    Raises:
        InputError: a bad manifest, a member that is an endpoint or a manifest or does not load (the message names
            the manifest and the member), members that disagree on input shape, classes or bounds, or shares that
            are all zero.
    """
    from bastion.defenses.ensemble import EnsembleClassifier
    from bastion.models.loading import LoadedModel, is_endpoint_spec

    manifest = read_manifest(path)
    folder = path.resolve().parent
    loaded = []
    for index, member in enumerate(manifest.members):
        where = f"{path}: member {index} ({member.model})"
        if is_endpoint_spec(member.model) or Path(member.model).suffix.lower() in MANIFEST_SUFFIXES:
            raise InputError(f"{where} is an endpoint or a manifest; an ensemble's members must be model files or "
                             "factories")
        weights = None if member.weights is None else str(_resolve(folder, member.weights))
        try:
            loaded.append(load_member(_resolve_spec(folder, member.model), weights))
        except BastionError as error:
            raise InputError(f"{where}: {error}") from None
    try:
        classifier = EnsembleClassifier([m.classifier for m in loaded], combine=manifest.combine,
                                        weights=[member.share for member in manifest.members])
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    description = f"ensemble {path} ({manifest.combine}, shares {classifier.weights}): " + "; ".join(
        m.description for m in loaded)
    return LoadedModel(classifier, description, _digest(manifest.combine, classifier.weights, loaded), "ensemble")


def _resolve(folder: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def _resolve_spec(folder: Path, spec: str) -> str:
    """A member's spec: a factory (``pkg.module:factory``) as it is unless a file of that name lies beside the
    manifest; a file path against the manifest's folder."""
    from bastion.models.loading import is_factory_spec

    resolved = _resolve(folder, spec)
    return spec if is_factory_spec(spec) and not resolved.exists() else str(resolved)


def _digest(combine: str, shares: list[float], loaded: list[LoadedModel]) -> str | None:
    hashes = [m.sha256 for m in loaded]
    if any(h is None for h in hashes):
        return None
    content = json.dumps({"combine": combine, "members": [{"sha256": h, "share": s} for h, s in zip(
        hashes, shares, strict=True)]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()
