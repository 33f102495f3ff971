"""Label-only output: reveal the top class and nothing else.

Paper: Tramèr, Zhang, Juels, Reiter, Ristenpart, "Stealing Machine Learning Models via Prediction
APIs", USENIX Security 2016 (section 8: class labels only). Each row becomes the one-hot vector of
its top class; the defended classifier's ``access`` becomes ``"labels"``, so extraction attacks can
learn only from labels (Knockoff Nets then trains on hard labels, as with ``output="labels"``).
Shapes: ``(N, C)`` in and out.

Example:
    >>> hardened = LabelOnly().wrap(model)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.defenses.output.base import PostProcessor


class LabelOnly(PostProcessor):
    """One-hot top label; no parameters."""

    name = "label-only"
    label_only = True

    def _apply(self, probabilities: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        return F.one_hot(probabilities.argmax(dim=1), probabilities.shape[1]).to(probabilities.dtype)
