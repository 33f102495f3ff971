"""Top-k: reveal only the ``k`` largest probabilities of each answer.

Paper: Tramèr, Zhang, Juels, Reiter, Ristenpart, "Stealing Machine Learning Models via Prediction
APIs", USENIX Security 2016 (section 8, rounding and class-label-only outputs as countermeasures);
top-k is the usual API form (Orekondy et al. 2019 evaluate it against Knockoff Nets).
The other ``C - k`` probabilities become 0, and the kept ones keep their values (default), or with
``renormalise=True`` are divided by their sum so that every row sums to 1 (at ``k = 1`` that is
label-only). The top class is always kept and stays on top. Default: ``k = 1``, unnormalised (the
top class and its confidence). Shapes: ``(N, C)`` in and out, ``k <= C``.

Example:
    >>> hardened = TopK(k=3).wrap(model)
"""

from __future__ import annotations

import torch

from bastion.core.errors import InputError
from bastion.defenses.output.base import PostProcessor, check_int


class TopK(PostProcessor):
    """Keep the ``k`` (>= 1, default 1) largest probabilities and zero the rest; ``renormalise`` (default False)."""

    name = "top-k"

    def __init__(self, k: int = 1, *, renormalise: bool = False) -> None:
        self.k = check_int(k, "k", 1)
        self.renormalise = bool(renormalise)

    def _apply(self, probabilities: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        if self.k > probabilities.shape[1]:
            raise InputError(f"top-k: k={self.k} is more than the model's {probabilities.shape[1]} classes")
        kept = probabilities.topk(self.k, dim=1)
        out = torch.zeros_like(probabilities).scatter_(1, kept.indices, kept.values)
        if self.renormalise:
            out = out / out.sum(dim=1, keepdim=True).clamp_min(torch.finfo(out.dtype).tiny)
        return out
