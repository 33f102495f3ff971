"""Threat-model documents: who attacks the system, along which paths, and the evidence each path requires.

A :class:`ThreatDocument` is written in YAML and versioned with the model (``bastion threat init``
prints a template). It names the system, its assets, its attackers and their capabilities, and the
attack paths between them, each with MITRE ATLAS technique ids, a likelihood and an impact (1..5;
risk = likelihood x impact) and the **gates** that must hold before a version of the model may ship::

    attack_paths:
      - id: evasion
        title: Adversarial images evade the classifier
        attacker: api-user
        assets: [model-decisions]
        atlas: [AML.T0043, AML.T0015]
        likelihood: 4
        impact: 4
        requires:
          - {evidence: scan, metric: robust_accuracy, eps: 0.03, min: 0.5}

A gate reads one metric of one kind of evidence record (:data:`bastion.governance.metrics.METRICS` lists
them with the selectors each needs) and holds it against exactly one of ``min`` or ``max``. Every
reference must resolve: a bad document raises :class:`~bastion.core.errors.InputError` whose message
names the YAML path of each problem (``attack_paths[0].requires[1].metric``) and what to write instead.

Not to be confused with :class:`bastion.core.threat.ThreatModel`, an attack's budget (norm, eps, access).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from bastion.core.errors import ConfigError, InputError
from bastion.core.yamlio import load_yaml
from bastion.governance.metrics import AUDIT_CHECKS, METRICS, SELECTORS, EvidenceKind
from bastion.storage.ledger import canonical_json

Exposure = Literal["public", "partner", "internal"]
OutputKind = Literal["scores", "top-k", "label"]
Modality = Literal["image", "tabular", "text"]
#: What an attacker can do. query-access: send inputs and read answers; unlimited-queries: without a
#: practical budget; white-box: read the weights; training-data-write: add or change training samples;
#: model-file-access: replace or tamper with the model file or its dependencies.
Capability = Literal["query-access", "unlimited-queries", "white-box", "training-data-write", "model-file-access"]
CAPABILITIES: tuple[str, ...] = get_args(Capability)

ATLAS_PATTERN = re.compile(r"AML\.T\d{4}(\.\d{3})?")
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: An example value per selector, for "add eps: 0.03" messages.
_SELECTOR_EXAMPLES = {"eps": "0.03", "suite": "standard", "radius": "0.25", "attack": "lira", "fpr": "0.001",
                      "check": "poison"}
#: The package folder holding the ``NAME.yaml`` templates of ``bastion threat init``.
TEMPLATES = "templates"


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{value!r} is not a usable id; use letters, digits, '.', '_' and '-' (e.g. api-user)")
    return value


def _atlas_id(value: str) -> str:
    if not ATLAS_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a MITRE ATLAS technique id; write AML.T and four digits, with an optional "
                         ".NNN sub-technique, e.g. AML.T0043 or AML.T0024.000")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
AtlasId = Annotated[str, AfterValidator(_atlas_id)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, data: Any) -> Any:
        """Refuse ``true``/``false`` where a number goes (pydantic would read them as 1 and 0)."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and _numeric(field.annotation):
                    raise ValueError(f"{name}: {str(value).lower()} is a yes/no value; give a number")
        return data


def _numeric(annotation: Any) -> bool:
    return annotation in (int, float) or any(arg in (int, float) for arg in get_args(annotation))


class System(_Model):
    """The system the model serves in, as far as its threats depend on it."""

    name: str = Field(min_length=1, description="the system's name, e.g. 'photo-moderation-api'")
    description: str = Field(default="", description="what it does, for whom")
    exposure: Exposure = Field(description="who can send it inputs: public, partner or internal")
    output: OutputKind = Field(description="what an answer reveals: scores (probabilities), top-k or label")
    modality: Modality = Field(description="what it reads: image, tabular or text")


class Asset(_Model):
    """Something worth protecting: the model's decisions, its weights, its training data."""

    id: Identifier = Field(description="referred to by attack paths' assets")
    description: str = Field(min_length=1)


class Attacker(_Model):
    """Someone who wants something from the system, and what they can do."""

    id: Identifier = Field(description="referred to by attack paths' attacker")
    goal: str = Field(min_length=1, description="what they want, in a sentence")
    capabilities: list[Capability] = Field(min_length=1, description=f"any of {', '.join(CAPABILITIES)}")


class Gate(_Model):
    """A release gate: one metric of one kind of evidence, held against ``min`` or ``max``.

    Selectors (``eps``, ``suite``, ``radius``, ``attack``, ``fpr``, ``check``) say which value of the
    record to read; each metric needs some and accepts others (``metrics.METRICS``), and others are refused.
    """

    id: Identifier | None = Field(default=None, description="default: evidence.metric@selector=value, "
                                  "e.g. scan.robust_accuracy@eps=0.03")
    evidence: EvidenceKind = Field(description="the kind of evidence record the value comes from")
    metric: str = Field(description="the metric's name, from the table of its evidence kind")
    eps: float | None = Field(default=None, gt=0, description="perturbation budget of a scan result")
    suite: str | None = Field(default=None, description="the scan suite the record must have run")
    radius: float | None = Field(default=None, ge=0, description="radius on a certification curve")
    attack: str | None = Field(default=None, description="one attack (membership) or extraction run (name or "
                               "strategy); default: the strongest")
    fpr: float | None = Field(default=None, gt=0, lt=1, description="false-positive rate, e.g. 0.001 for 0.1%")
    check: str | None = Field(default=None, description=f"audit check: {', '.join(AUDIT_CHECKS)}")
    min: float | None = Field(default=None, allow_inf_nan=False, description="the value must be at least this")
    max: float | None = Field(default=None, allow_inf_nan=False, description="the value must be at most this")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str, info: ValidationInfo) -> str:
        evidence = info.data.get("evidence")
        if evidence is not None and metric not in METRICS[evidence]:
            raise ValueError(f"{metric!r} is no metric of {evidence} evidence; write one of "
                             f"{', '.join(METRICS[evidence])}")
        return metric

    @field_validator("check")
    @classmethod
    def _known_check(cls, check: str | None) -> str | None:
        if check is not None and check not in AUDIT_CHECKS:
            raise ValueError(f"unknown audit check {check!r}; write one of {', '.join(AUDIT_CHECKS)}")
        return check

    @model_validator(mode="after")
    def _selectors_and_threshold(self) -> Gate:
        metric = METRICS[self.evidence][self.metric]
        problems = [f"{self.evidence} {self.metric} needs {name}: add '{name}: {_SELECTOR_EXAMPLES[name]}'"
                    for name in metric.required if getattr(self, name) is None]
        for name in SELECTORS:
            if getattr(self, name) is not None and name not in metric.selectors:
                takes = f"it takes {', '.join(metric.selectors)}" if metric.selectors else "it takes no selector"
                problems.append(f"{name} does not apply to {self.evidence} {self.metric} ({takes}); remove it")
        if self.min is not None and self.max is not None:
            problems.append("give one threshold, min or max, not both (write two gates for a range)")
        elif self.min is None and self.max is None:
            problems.append("give a threshold: 'min: 0.5' (the value must be at least 0.5) or 'max: 0.1' (at most)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def gate_id(self) -> str:
        """``id``, or the default ``evidence.metric@selector=value...``."""
        if self.id is not None:
            return self.id
        selectors = "".join(f"@{name}={_text(getattr(self, name))}" for name in SELECTORS
                            if getattr(self, name) is not None)
        return f"{self.evidence}.{self.metric}{selectors}"

    @property
    def bound(self) -> tuple[Literal["min", "max"], float]:
        """``("min", threshold)`` or ``("max", threshold)``."""
        return ("min", self.min) if self.min is not None else ("max", float(self.max or 0.0))


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class AttackPath(_Model):
    """One way an attacker reaches an asset, how likely and how bad it is, and the gates that answer it."""

    id: Identifier
    title: str = Field(min_length=1)
    description: str = ""
    attacker: Identifier = Field(description="an id under attackers")
    assets: list[Identifier] = Field(min_length=1, description="ids under assets")
    atlas: list[AtlasId] = Field(min_length=1, description="MITRE ATLAS technique ids, e.g. AML.T0043")
    likelihood: int = Field(ge=1, le=5, description="1 (rare) .. 5 (expected)")
    impact: int = Field(ge=1, le=5, description="1 (negligible) .. 5 (severe)")
    mitigations: list[str] = Field(default_factory=list, description="what is in place, in words")
    requires: list[Gate] = Field(default_factory=list, description="the gates a release must pass for this path")

    @model_validator(mode="before")
    @classmethod
    def _risk_is_computed(cls, data: Any) -> Any:
        """Accept ``risk`` (as in the document's own JSON dump) only when it is ``likelihood * impact``."""
        if not isinstance(data, dict) or "risk" not in data:
            return data
        data = dict(data)
        risk, likelihood, impact = data.pop("risk"), data.get("likelihood"), data.get("impact")
        # Without valid likelihood and impact their own errors are reported; risk waits for them.
        if isinstance(likelihood, int) and isinstance(impact, int) and risk != likelihood * impact:
            raise ValueError(f"risk is computed as likelihood x impact ({likelihood * impact}); remove it")
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def risk(self) -> int:
        """likelihood x impact, 1..25."""
        return self.likelihood * self.impact

    @model_validator(mode="after")
    def _distinct_gates(self) -> AttackPath:
        ids = [gate.gate_id for gate in self.requires]
        repeated = sorted({gate_id for gate_id in ids if ids.count(gate_id) > 1})
        if repeated:
            raise ValueError(f"gate id {repeated[0]!r} appears twice in requires; give the gates distinct ids")
        return self


class ThreatDocument(_Model):
    """A threat model document: the system, its assets and attackers, and the attack paths with their gates."""

    schema_version: Literal[1] = Field(default=1, description="the document format's version")
    system: System
    assets: list[Asset] = Field(min_length=1)
    attackers: list[Attacker] = Field(min_length=1)
    attack_paths: list[AttackPath] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> ThreatDocument:
        problems = [*_repeated("assets", [a.id for a in self.assets]),
                    *_repeated("attackers", [a.id for a in self.attackers]),
                    *_repeated("attack_paths", [p.id for p in self.attack_paths])]
        attackers, assets = [a.id for a in self.attackers], [a.id for a in self.assets]
        for i, path in enumerate(self.attack_paths):
            if path.attacker not in attackers:
                problems.append(f"attack_paths[{i}].attacker: unknown attacker {path.attacker!r}; write one of the "
                                f"ids under attackers: {', '.join(attackers)}")
            problems.extend(f"attack_paths[{i}].assets[{j}]: unknown asset {asset!r}; write one of the ids "
                            f"under assets: {', '.join(assets)}"
                            for j, asset in enumerate(path.assets) if asset not in assets)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def ranked_paths(self) -> list[AttackPath]:
        """The attack paths by risk, highest first; ties by impact, then in document order."""
        return sorted(self.attack_paths, key=lambda path: (-path.risk, -path.impact))

    def sha256(self) -> str:
        """Hex SHA-256 of the document's canonical JSON (sorted keys, defaults filled in, risk included)."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode("utf-8")).hexdigest()


def _repeated(section: str, ids: list[str]) -> list[str]:
    return [f"{section}[{i}].id: {value!r} is used twice; ids must be distinct"
            for i, value in enumerate(ids) if value in ids[:i]]


# --- reading documents ---------------------------------------------------------------------------------


def parse_threat_document(data: object, *, source: str = "the document") -> ThreatDocument:
    """Validate parsed YAML (a mapping) as a :class:`ThreatDocument`.

    Raises:
        InputError: naming ``source`` and, one line each, the YAML path of every problem and what to write.
    """
    if not isinstance(data, dict):
        raise InputError(f"{source}: a threat document is a mapping with system, assets, attackers and attack_paths "
                         f"at its top level, not {type(data).__name__}; start from 'bastion threat init --template "
                         "public-image-api'")
    try:
        return ThreatDocument.model_validate(data)
    except ValidationError as error:
        problems = [line for problem in error.errors(include_url=False) for line in _problem(problem).splitlines()]
        raise InputError(f"{source} is not a valid threat document:\n" + "\n".join(f"  {p}" for p in problems)) \
            from None


def load_threat_document(path: str | Path) -> ThreatDocument:
    """Read and validate a threat document from a YAML file (``yaml.safe_load``, refusing a key given twice).

    Raises:
        InputError: a missing or unreadable file, a YAML syntax error (with its line and column), or an
            invalid document (see :func:`parse_threat_document`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no threat document at {path}; start one with 'bastion threat init --template "
                         f"public-image-api > {path.name}'")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read threat document {path}: {error}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{path}{where}: not valid YAML ({problem}); check the indentation and quoting there") \
            from None
    return parse_threat_document(data, source=str(path))


def template_names() -> list[str]:
    """Names of the bundled templates (``public-image-api``...), sorted."""
    folder = resources.files("bastion.governance").joinpath(TEMPLATES)
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def template_text(name: str) -> str:
    """The YAML text of the bundled template ``name``.

    Raises:
        ConfigError: no template of that name (the message lists those there are).
    """
    names = template_names()
    if name not in names:
        raise ConfigError(f"unknown template {name!r}; choose one of {', '.join(names)}")
    return resources.files("bastion.governance").joinpath(TEMPLATES, f"{name}.yaml").read_text(encoding="utf-8")


# --- validation messages -------------------------------------------------------------------------------


def _yaml_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields live at ``loc`` (list indexes skipped), or ``None`` when ``loc`` leaves the models."""
    model: type[BaseModel] | None = ThreatDocument
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _inner_model(model.model_fields[part].annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union) or type(annotation).__name__ == "UnionType":
        return next((m for m in map(_inner_model, get_args(annotation)) if m is not None), None)
    return None


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as ``yaml.path: what is wrong; what to write``."""
    loc, kind = tuple(error["loc"]), error["type"]
    message = error["msg"].removeprefix("Value error, ")
    where = _yaml_path(loc)
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = f"; the fields here are {', '.join(owner.model_fields)}" if owner is not None else ""
        return f"{where}: unknown field{allowed}"
    if kind == "missing":
        owner = _model_at(loc[:-1])
        field = owner.model_fields.get(str(loc[-1])) if owner is not None else None
        hint = f" ({field.description})" if field is not None and field.description else ""
        return f"{where}: missing; add it{hint}"
    # A check of the whole document already names each problem's path.
    return "\n".join(f"{where}: {line}" if where else line for line in message.splitlines())
