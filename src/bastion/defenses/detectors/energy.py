"""Energy score: the free energy of the logits, high for inputs far from the training distribution.

Paper: Liu, Wang, Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020.
Score: ``E(x) = -T * logsumexp(logits / T)``. In-distribution inputs get large logits and so low
(very negative) energy; out-of-distribution inputs get higher energy, so the score is used as it
is: higher = more suspicious. Unlike the softmax confidence it is not squashed into [0, 1], which
separates distributions better. Reads only the logits (free when the caller passes them); needs a
model with scores. For a model that returns log-probabilities (an output-hardened one) the energy
is 0 for every input and the detector is useless: give it the raw model.
Default: ``temperature = 1`` (the paper's choice for a pretrained model).

Example:
    >>> EnergyDetector().fit(model, x_clean_heldout).score(model, x)
"""

from __future__ import annotations

import math
import numbers

import torch

from bastion.core.errors import InputError
from bastion.defenses.detectors.base import InputDetector, model_logits
from bastion.models.base import Classifier


class EnergyDetector(InputDetector):
    """``-temperature * logsumexp(logits / temperature)`` of each input ``(N,)``.

    Args:
        temperature: ``T > 0``, default 1.
    """

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise InputError(f"temperature must be a finite number > 0 (default 1), got {temperature!r}")
        self.temperature = float(temperature)

    def _score(self, model: Classifier, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        logits = model_logits(model, x) if logits is None else logits
        return -self.temperature * torch.logsumexp(logits.double() / self.temperature, dim=1)
