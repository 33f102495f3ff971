"""The evidence record of a defended scan: the defense, both passes, and how far apart they are.

``scan.json`` stays an ordinary :class:`~bastion.core.records.ScanRecord`, of the adaptive pass (the
number to trust). This record, written next to it as ``defense.json``, holds what a ``ScanRecord``
has no field for: the defense's parameters, how the adaptive attack took its gradients, the plain
pass in full (itself a valid ``ScanRecord``) and a per-eps comparison of the two passes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.core.records import ScanRecord

#: The file a defended scan writes this record to, next to ``scan.json``.
DEFENSE_FILE = "defense.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefenseStepRef(_Record):
    """One preprocessing step as it ran."""

    name: str = Field(description="spec name: bits, median, jpeg, blur, noise or resize")
    params: dict[str, Any] = Field(description="the step's get_params()")
    differentiable: bool
    random: bool
    adaptive_gradient: Literal["autograd", "bpda", "eot", "bpda+eot"] = Field(
        description="how the adaptive attack differentiates through this step")


class DefenseRef(_Record):
    """The defense: a preprocessing pipeline in front of the model."""

    spec: str = Field(description="the --preprocess spec, e.g. bits:4,median:3")
    steps: list[DefenseStepRef]
    draws: int = Field(description="random draws averaged per prediction (1 for deterministic pipelines)")
    prediction: str = Field(description="how the defended model's prediction is defined")


class PassComparison(_Record):
    """Plain and adaptive robust accuracy at one eps."""

    eps: float
    clean_accuracy: float
    plain_robust_accuracy: float
    adaptive_robust_accuracy: float
    gap: float = Field(description="plain minus adaptive robust accuracy; large and positive: hidden gradients")
    plain_gradient_robust_accuracy: float | None = Field(
        default=None, description="share correct and unbroken by the plain pass's gradient (white-box) attacks; "
        "None when none ran")
    adaptive_gradient_robust_accuracy: float | None = Field(
        default=None, description="the same for the adaptive pass's gradient attacks")
    robust_under_both: float = Field(description="share of samples neither pass broke (the per-sample worst case)")
    broken_only_by_plain: int = Field(description="samples the plain pass broke and the adaptive pass did not")
    plain_not_real: bool = Field(description="gap above hide_threshold: the plain robust accuracy overstates")
    hides_gradients: bool = Field(
        description="plain_not_real, or the gradient attacks alone differ by more than hide_threshold (the "
        "suite's black-box attacks made up for the fooled gradient attacks)")


class DefenseScanRecord(_Record):
    """Evidence of a preprocessing defense scanned twice, with plain and with adaptive attacks."""

    kind: Literal["defense-scan"] = "defense-scan"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    defense: DefenseRef
    adaptive_gradients: str = Field(description="autograd, bpda, eot-K or bpda+eot-K (K EOT samples)")
    eot_samples: int
    hide_threshold: float = Field(description="a gap above this many points of accuracy flags gradient hiding")
    comparison: list[PassComparison] = Field(description="one row per eps, in the order scanned")
    plain: ScanRecord = Field(description="the plain pass: ordinary attacks on the defended model")
    headline_record: str = Field(default="scan.json",
                                 description="file of the adaptive pass's ScanRecord, the headline")

    @property
    def hides_gradients(self) -> bool:
        """True when the defense fooled the plain gradient attacks by more than ``hide_threshold`` at some eps."""
        return any(row.hides_gradients for row in self.comparison)

    @property
    def plain_not_real(self) -> bool:
        """True when the plain robust accuracy exceeds the adaptive one by more than ``hide_threshold`` somewhere."""
        return any(row.plain_not_real for row in self.comparison)
