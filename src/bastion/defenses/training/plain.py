"""Plain training: cross-entropy on clean inputs, optionally with the logits divided by a temperature.

A temperature ``T > 1`` trains the teacher of defensive distillation (Papernot et al. 2016): the
network learns logits about ``T`` times larger, which is what the student is then distilled from.

Example:
    >>> record = fit(classifier, x, y, CrossEntropy(), epochs=10)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.core.errors import InputError
from bastion.models.torch_adapter import TorchClassifier


class CrossEntropy:
    """Mean cross-entropy of ``softmax(logits / temperature)``; ``temperature`` defaults to 1 (plain training)."""

    name = "plain"

    def __init__(self, temperature: float = 1.0) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature must be a finite number > 0, got {temperature}")
        self.temperature = float(temperature)

    def loss(
        self,
        classifier: TorchClassifier,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: float,
        seed: int,
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-entropy of a batch ``x`` ``(B, *input_shape)``, ``y`` ``(B,)`` in train mode."""
        module.train()
        logits = module(classifier.normalise(x))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return F.cross_entropy(logits, y)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
