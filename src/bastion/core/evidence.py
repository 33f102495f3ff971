"""Evidence records of ``bastion certify`` and ``bastion harden`` (``ScanRecord`` is in ``records``).

Like every evidence record they are pydantic models whose JSON form is canonical: the HTML
reports render them and the registry (later) attaches them to a model version.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.core.records import ArtifactRef, DatasetRef, ScanRecord
from bastion.core.threat import Norm

CertifyMethod = Literal["smoothing", "ibp", "crown", "crown-ibp"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CertifiedSample(_Record):
    """One sample's certificate."""

    index: int = Field(description="position in the certified data (for arrays only; ids are stable)")
    sample_id: str = Field(description="SHA-256 of the sample's bytes and label")
    label: int
    prediction: int = Field(description="certified prediction; -1 when the certifier abstained")
    radius: float = Field(description="certified radius (0 when abstained or not certified)")
    abstained: bool
    forward_passes: int | None = Field(default=None, description="model evaluations spent (smoothing)")


class CurvePoint(_Record):
    """Certified accuracy at one radius: the share of all samples certified correct at that radius."""

    radius: float
    certified_accuracy: float


class CertifyConfig(_Record):
    method: CertifyMethod
    norm: Norm = Field(description="l2 for Gaussian smoothing; linf or l2 for bounds")
    radius: float = Field(description="the headline radius (eps for bounds)")
    radii: list[float] = Field(description="radii of the certified-accuracy curve")
    sigma: float | None = None
    n: int | None = None
    n0: int | None = None
    alpha: float | None = None
    sequential: bool = False
    bounds: tuple[float, float]
    seed: int
    batch_size: int


class CertifyRecord(_Record):
    """The evidence record of one certification run."""

    kind: Literal["certify"] = "certify"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    config: CertifyConfig
    model: ArtifactRef
    data: DatasetRef
    clean_accuracy: float = Field(description="accuracy of the model itself (the base model for smoothing)")
    robust_accuracy: float | None = Field(
        default=None, description="accuracy under attack at the headline radius (an upper bound on certified)")
    robust_attack: str | None = Field(default=None, description="what produced robust_accuracy")
    certified_accuracy: float = Field(description="share certified correct at the headline radius")
    abstain_rate: float
    curve: list[CurvePoint]
    samples: list[CertifiedSample]
    mean_forward_passes: float | None = None
    seconds: float


class HardenCost(_Record):
    """What hardening cost: time, and clean accuracy given up for robust accuracy gained."""

    training_seconds: float
    clean_accuracy_before: float | None
    clean_accuracy_after: float
    robust_accuracy_before: float | None
    robust_accuracy_after: float
    certified_accuracy_after: float | None = None

    @property
    def clean_accuracy_lost(self) -> float | None:
        if self.clean_accuracy_before is None:
            return None
        return self.clean_accuracy_before - self.clean_accuracy_after


class HardenRecord(_Record):
    """The evidence record of one hardening run: training record, scans before and after, and cost."""

    kind: Literal["harden"] = "harden"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    method: str
    norm: Norm
    eps: float
    training: dict[str, Any] = Field(description="the training record (per-epoch history, parameters)")
    model_before: ArtifactRef | None = Field(description="the model given, when weights were given")
    model_after: ArtifactRef
    train_data: DatasetRef
    eval_data: DatasetRef
    before: ScanRecord | None = None
    after: ScanRecord
    certified: CertifyRecord | None = None
    cost: HardenCost
