"""Rounding: reveal each probability to ``decimals`` decimal places only.

Paper: Tramèr, Zhang, Juels, Reiter, Ristenpart, "Stealing Machine Learning Models via Prediction
APIs", USENIX Security 2016 (section 8.1: rounding confidences slows equation-solving extraction).
Rows are not renormalised after rounding, so they sum to 1 within ``C * 0.5 * 10 ** -decimals``.
Rounding can tie the top class with another (0.504 and 0.496 both become 0.5 at one decimal); the
defended classifier breaks such ties toward the model's own label, so its predictions never change.
Default: 2 decimals (``decimals >= 1``). Shapes: ``(N, C)`` in and out.

Example:
    >>> hardened = Rounding(decimals=1).wrap(model)
"""

from __future__ import annotations

import torch

from bastion.defenses.output.base import PostProcessor, check_int


class Rounding(PostProcessor):
    """Round probabilities to ``decimals`` (>= 1, default 2) decimal places (half to even)."""

    name = "rounding"

    def __init__(self, decimals: int = 2) -> None:
        self.decimals = check_int(decimals, "decimals", 1)

    def _apply(self, probabilities: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        return torch.round(probabilities, decimals=self.decimals)
