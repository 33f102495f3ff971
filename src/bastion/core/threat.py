"""The threat model: what the attacker may change (norm, eps, bounds) and what they may see (access)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from bastion.core.literals import Access, Norm

#: The largest finite float32, the type of every model input: bounds beyond it cannot be applied.
FLOAT32_MAX = 3.4028234663852886e38

#: Access levels from most to least information. An attack needing ``scores`` also runs with ``white``.
ACCESS_ORDER: tuple[Access, ...] = ("white", "scores", "labels")


def access_allows(have: Access, need: Access) -> bool:
    """True when an attacker with access ``have`` can run an attack that needs ``need``."""
    return ACCESS_ORDER.index(have) <= ACCESS_ORDER.index(need)


def weakest_access(*levels: Access) -> Access:
    """The least informative of several access levels (a threat model and a model both limit access)."""
    return max(levels, key=ACCESS_ORDER.index)


class ThreatModel(BaseModel):
    """An attacker's budget and knowledge.

    Attributes:
        norm: ``"linf"`` or ``"l2"``; distances are measured per sample over all features.
        eps: the perturbation budget, ``>= 0``, in the units of the model's input (after bounds,
            before any normalisation the adapter applies).
        bounds: valid input range ``(low, high)``; adversarial inputs are clipped to it. Default (0, 1).
        targeted: when true, success means reaching a given target class instead of any wrong class.
        access: ``"white"`` (gradients), ``"scores"`` (output scores only) or ``"labels"`` (top label).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    norm: Norm = "linf"
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)
    targeted: bool = False
    access: Access = "white"

    @field_validator("eps")
    @classmethod
    def _eps_is_finite_and_non_negative(cls, eps: float) -> float:
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        return eps

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> ThreatModel:
        low, high = self.bounds
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError(f"bounds must be finite with low < high, got {self.bounds}")
        if max(abs(low), abs(high)) > FLOAT32_MAX:
            raise ValueError(f"bounds must lie within float32's range (about ±3.4e38), the inputs' type; got "
                             f"{self.bounds}")
        return self
