"""Bit-depth reduction (feature squeezing).

Paper: Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks",
NDSS 2018.
Each value is rescaled from the bounds to [0, 1], rounded to one of ``2**bits`` evenly spaced levels
(round half to even) and scaled back, so ``bits=1`` maps every value to ``low`` or ``high``.
Not differentiable: the rounding has a zero gradient almost everywhere, which is exactly what fools
a plain gradient attack; the adaptive attack uses BPDA. Deterministic. Any input shape.
Default: 4 bits.

Example:
    >>> BitDepthReduction(bits=3).fit(bounds=(0.0, 1.0))(x)
"""

from __future__ import annotations

import torch

from bastion.defenses.preprocess.base import Bounds, Preprocessor, check_int


class BitDepthReduction(Preprocessor):
    """Quantise every input value to ``2**bits`` levels spanning the bounds (1 <= bits <= 16)."""

    name = "bits"
    spec_param = "bits"
    spec_type = int
    spec_help = "bits:N (bit depth, an integer 1..16, e.g. bits:4)"
    differentiable = False
    random = False

    def __init__(self, bits: int = 4) -> None:
        self.bits = check_int(bits, "bits", 1, 16)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        low, high = bounds
        levels = 2**self.bits - 1
        unit = ((x - low) / (high - low)).clamp(0.0, 1.0)
        return low + torch.round(unit * levels) / levels * (high - low)
