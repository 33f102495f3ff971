"""The per-request policy: what input is accepted, how it is cleaned, which detectors score it, what
each score leads to, and what the client is shown. Written in YAML; every field has a default.

Example (``policy.yaml``)::

    input:                      # shape, dtype and range default to the model's own
      max_instances: 64
    sanitise:
      bit_depth: 5              # feature squeezing before the model (null: off)
    reference: digits:train     # data the detectors are fitted on (a bastion data reference)
    reference_limit: 2000
    detectors:
      - {kind: energy, false_positive_rate: 0.01}
      - {kind: squeeze, false_positive_rate: 0.01}
    decision:
      flag_at: 1                # detectors flagging an instance -> answer and flag
      review_at: 2              # -> escalate to human review
      refuse_at: 3              # -> refuse
      review_below_confidence: 0.3
    output: {default: full, top_k: 3, decimals: 2}
    extraction: {enabled: true, throttle: false, webhook: null}
    memory_format: contiguous   # or channels_last: see below

``memory_format: channels_last`` runs a torch model on image inputs ``(C, H, W)`` with its weights and every batch
in channels-last layout, where PyTorch's CPU convolutions and pooling are faster (bastion's Fashion-MNIST CNN, one
thread: 417 µs for one image and 190 µs an image in a batch of eight, against 604 and 417 in the default layout,
whose pooling costs about the same per image in any batch). The bits of a prediction
differ between the two layouts, so the layout is part of the policy, and of its hash, and replay uses it.

A text model (a scikit-learn pipeline on raw strings, OIP v2 ``BYTES`` inputs) takes a ``text:`` section
instead of detectors, reference and sanitising; every instance is screened by the prompt guard first::

    text:
      max_chars: 20000          # the longest instance, in characters
      guard: {enabled: true, action: refuse, threshold: null, long_threshold: null, rules_only: false}
      # long_threshold: flags an instance over 256 characters instead of threshold (null: threshold; padding
      # a short injection past 256 characters gets it judged by this one)
      # action for a flagged instance: refuse (422 with the guard's reasons), review (202, human review)
      # or flag (answered, with the reasons in the answer's flags)

The policy's version is the SHA-256 of its canonical JSON (defaults filled in), kept with every
audit record so a prediction can be replayed under exactly the policy it was made under.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.core.errors import ConfigError, validation_problems
from bastion.core.yamlio import load_yaml
from bastion.storage.ledger import canonical_json

Decision = Literal["answer", "flag", "review", "refuse"]
OutputPolicy = Literal["full", "top-k", "rounded", "label"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputRules(_Strict):
    """What an accepted request looks like. ``None`` fields take the model's value."""

    shape: tuple[int, ...] | None = None
    dtype: Literal["FP16", "FP32", "FP64"] = "FP32"
    range: tuple[float, float] | None = None
    max_instances: int = Field(64, ge=1, le=100_000)


class SanitiseRules(_Strict):
    """Optional feature squeezing applied to every input before the model (``bit_depth``: 1..8, null off)."""

    bit_depth: int | None = Field(None, ge=1, le=8)


class DetectorRule(_Strict):
    """One detector: its ``kind`` (``confidence``, ``energy``, ``mahalanobis``, ``squeeze``), the false
    positive rate its threshold is set at on the reference data, and its own parameters."""

    kind: str
    false_positive_rate: float = Field(0.01, gt=0, lt=1)
    params: dict[str, Any] = Field(default_factory=dict)


class DecisionRules(_Strict):
    """How many detectors flagging one instance lead to flag / review / refuse (the worst instance decides),
    and the confidence below which an answer goes to review."""

    flag_at: int = Field(1, ge=1)
    review_at: int | None = Field(2, ge=1)
    refuse_at: int | None = Field(None, ge=1)
    review_below_confidence: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> DecisionRules:
        steps = [v for v in (self.flag_at, self.review_at, self.refuse_at) if v is not None]
        if steps != sorted(steps):
            raise ValueError("decision thresholds must grow: flag_at <= review_at <= refuse_at")
        return self


class OutputRules(_Strict):
    """What a client sees by default (a key may carry its own ``output``)."""

    default: OutputPolicy = "full"
    top_k: int = Field(3, ge=1)
    decimals: int = Field(2, ge=0, le=8)


class ExtractionRules(_Strict):
    """The extraction monitor (``bastion.monitor.extraction``): on or off, whether an alert throttles the key,
    a webhook to call, PRADA's threshold and warm-up, and optional class-coverage and query-count alerts.
    The out-of-distribution rate it expects is the sum of the detectors' false-positive rates."""

    enabled: bool = True
    throttle: bool = False
    webhook: str | None = Field(None, pattern=r"^https?://")
    shapiro_threshold: float = Field(0.9, gt=0, lt=1)
    min_queries: int = Field(150, ge=3)
    coverage: int | None = Field(None, ge=2)
    budget: int | None = Field(None, ge=1)


class TextGuardRules(_Strict):
    """The prompt guard in front of a text model: on or off, what a flagged instance leads to, the classifier
    probability that flags (``None``: the classifier's own), the one that flags an instance over 256 characters
    instead (``None``: ``threshold``; see :class:`~bastion.defenses.text.guard.PromptGuard`) and whether to screen
    with the rules alone."""

    enabled: bool = True
    action: Literal["refuse", "review", "flag"] = "refuse"
    threshold: float | None = Field(None, gt=0, lt=1)
    long_threshold: float | None = Field(None, gt=0, lt=1)
    rules_only: bool = False


class TextRules(_Strict):
    """What a text model accepts: instances of at most ``max_chars`` characters, screened by ``guard``."""

    max_chars: int = Field(20_000, ge=1, le=1_048_576)
    guard: TextGuardRules = TextGuardRules()


class Policy(_Strict):
    """A whole policy; see the module docstring for the YAML form."""

    input: InputRules = InputRules()
    sanitise: SanitiseRules = SanitiseRules()
    reference: str | None = None
    reference_limit: int = Field(2000, ge=20)
    detectors: tuple[DetectorRule, ...] = ()
    decision: DecisionRules = DecisionRules()
    output: OutputRules = OutputRules()
    extraction: ExtractionRules = ExtractionRules()
    text: TextRules | None = None
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"

    @model_validator(mode="after")
    def _detectors_need_reference(self) -> Policy:
        if self.detectors and self.reference is None:
            raise ValueError("detectors are fitted on reference data: add `reference:` (e.g. digits:train or a "
                             "dataset folder) or remove `detectors:`")
        return self

    @property
    def text_rules(self) -> TextRules:
        """The ``text`` section, or its defaults when the policy has none."""
        return self.text if self.text is not None else TextRules()

    def document(self) -> str:
        """Canonical JSON of the whole policy, defaults included (``text`` only when given, its guard's
        ``long_threshold`` only when set and ``memory_format`` only when not ``contiguous``, so that the hash of a
        policy written before any of them existed is unchanged)."""
        document = self.model_dump(mode="json")
        if document["memory_format"] == "contiguous":
            del document["memory_format"]
        if document["text"] is None:
            del document["text"]
        elif document["text"]["guard"]["long_threshold"] is None:
            del document["text"]["guard"]["long_threshold"]
        return canonical_json(document)

    def sha256(self) -> str:
        """The policy's version: SHA-256 of ``document()``."""
        return hashlib.sha256(self.document().encode("utf-8")).hexdigest()


def load_policy(path: str | Path | None) -> Policy:
    """The policy in the YAML file ``path`` (``None``: all defaults, no detectors).

    Raises:
        ConfigError: the file is missing, not YAML, or breaks a rule (the message names the field).
    """
    if path is None:
        return Policy()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"policy file not found: {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return policy_from_dict(raw if raw is not None else {}, source=str(path))


def policy_from_dict(raw: Any, *, source: str = "policy") -> Policy:
    """Validate a policy given as a mapping (``source`` names it in errors)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a policy is a mapping of sections (input, detectors, decision, ...), "
                          f"not {type(raw).__name__}")
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {validation_problems(error, whole='policy', limit=10)}") from None
