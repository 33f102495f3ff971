"""Typed records. ``AttackResult`` carries tensors between an attack and the engine; the pydantic
models below form the evidence record a scan writes (JSON is canonical, other formats render it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from bastion.core.threat import Access, Norm


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns, and (after the engine has checked it) what the engine returns.

    Attributes:
        x_adv: ``(N, *input_shape)`` adversarial inputs, same dtype and device as the clean ones.
        success: ``(N,)`` bool, the attack goal reached (misclassified, or target reached).
        distances: ``(N,)`` perturbation size in the threat model's norm.
        queries: ``(N,)`` int64 model evaluations spent per sample (forward passes, gradient or not).
        predictions: ``(N,)`` int64 labels of ``x_adv``; set by the engine when it verifies a result.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distances: torch.Tensor
    queries: torch.Tensor
    predictions: torch.Tensor | None = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleRecord(_Record):
    """The worst case found for one sample at one eps."""

    index: int = Field(description="position in the scanned data (for arrays only; ids are stable)")
    sample_id: str = Field(description="SHA-256 of the sample's bytes and label")
    label: int
    clean_prediction: int
    adversarial_prediction: int = Field(description="prediction on the worst case (clean if unbroken)")
    robust: bool = Field(description="correct on the clean input and no attack broke it")
    broken_by: str | None = None
    distance: float | None = Field(default=None, description="norm of the successful perturbation")
    queries: int = 0


class AttackSummary(_Record):
    """One attack's share of a cascade."""

    name: str
    params: dict[str, Any]
    access: Access
    points_attacked: int = 0
    points_broken: int = 0
    robust_accuracy_after: float | None = Field(
        default=None, description="overall robust accuracy after this attack ran (cumulative)"
    )
    queries: int = 0
    seconds: float = 0.0
    skipped: str | None = Field(default=None, description="why the attack did not run, if it did not")


class SanityFlag(_Record):
    """A sign that the evaluation may overestimate robustness (gradient masking and kin)."""

    check: str
    severity: Literal["info", "warning"] = "warning"
    message: str


class ClassRow(_Record):
    label: int
    name: str
    count: int
    clean_accuracy: float
    robust_accuracy: float


class EpsResult(_Record):
    """A full cascade at one eps."""

    eps: float
    clean_accuracy: float
    robust_accuracy: float
    attacks: list[AttackSummary]
    per_class: list[ClassRow]
    flags: list[SanityFlag]
    samples: list[SampleRecord]
    seconds: float


class ArtifactRef(_Record):
    description: str
    sha256: str | None = Field(default=None, description="hash of the model file(s) loaded")
    kind: str = Field(description="torch, torchscript, onnx, sklearn, sklearn-text, remote or ensemble")
    access: Access


class DatasetRef(_Record):
    description: str
    count: int
    sha256: str = Field(description="hash of the scanned arrays (x then y)")
    input_shape: list[int]
    num_classes: int
    manifest_root: str | None = None


class ScanConfig(_Record):
    suite: str
    attacks: list[str]
    norm: Norm
    eps: list[float]
    bounds: tuple[float, float]
    targeted: bool
    access: Access
    seed: int
    batch_size: int
    fail_under: float | None = None


class ScanRecord(_Record):
    """The evidence record of one scan: enough to know exactly what was tested, how and with what result."""

    kind: Literal["scan"] = "scan"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    config: ScanConfig
    model: ArtifactRef
    data: DatasetRef
    results: list[EpsResult]
    atlas_ids: list[str] = Field(default_factory=list)
    owasp_ids: list[str] = Field(default_factory=list)
    endpoint: dict[str, Any] | None = Field(default=None, description="a live endpoint's settings (key redacted), "
                                            "samples_sent and served_from_cache; None for a local model")

    @property
    def headline(self) -> EpsResult:
        """The result at the first eps asked for; ``--fail-under`` is checked against it."""
        return self.results[0]

    def passed(self) -> bool:
        """False when a ``fail_under`` threshold is set and the headline robust accuracy is below it."""
        threshold = self.config.fail_under
        return threshold is None or self.headline.robust_accuracy >= threshold
