"""Output noise: perturb each answer's probabilities (or log-probabilities) while keeping its top class.

Idea: the perturbation defenses against model stealing (Lee, Edwards, Molloy, Srivatsa, "Defending
Against NN Model Stealing Attacks Using Deceptive Perturbations", IEEE S&P Workshops 2019, whose
reverse sigmoid also keeps the top-1 label; Orekondy, Schiele, Fritz, "Prediction Poisoning",
ICLR 2020). This step is the simple calibrated form, not their optimised perturbations:

- ``space="probabilities"`` (default): ``p' = max(p + scale * n, 0)``, renormalised to sum to 1.
- ``space="logits"``: ``p' = softmax(log p + scale * n)`` (``log p`` clamped at ``1e-12``).

``n`` is standard Laplace (``distribution="laplace"``, the default; ``scale`` is the Laplace scale
``b``) or standard normal (``"gaussian"``; ``scale`` is the standard deviation), one draw per class.
The top class never changes: where the noise would move the argmax, the old and new top entries are
swapped (:func:`~bastion.defenses.output.base.keep_top_class`), so predictions and accuracy are
exactly the model's. The noise is keyed by the input's content and ``seed``: the same query always
gets the same answer, so an attacker cannot average the noise away by asking again.
Defaults: ``scale = 0.05``, Laplace, probabilities, ``seed = 0``. Shapes: ``(N, C)`` in and out.

Example:
    >>> hardened = OutputNoise(scale=0.1, distribution="gaussian").wrap(model)
"""

from __future__ import annotations

from typing import Literal

import torch

from bastion.core.errors import InputError
from bastion.core.seeding import keyed_normal, keyed_uniform
from bastion.defenses.output.base import MIN_PROBABILITY, PostProcessor, check_int, check_scale, keep_top_class

Distribution = Literal["laplace", "gaussian"]
Space = Literal["probabilities", "logits"]


class OutputNoise(PostProcessor):
    """Add keyed noise of size ``scale`` (>= 0) to probabilities or log-probabilities; the top class is kept.

    Args:
        scale: Laplace scale or Gaussian standard deviation, in probability (or log-probability) units.
        distribution: ``"laplace"`` (default) or ``"gaussian"``.
        space: ``"probabilities"`` (default) or ``"logits"``.
        seed: the noise seed, default 0.
    """

    name = "noise"
    random = True

    def __init__(self, scale: float = 0.05, *, distribution: Distribution = "laplace",
                 space: Space = "probabilities", seed: int = 0) -> None:
        self.scale = check_scale(scale, "scale")
        if distribution not in ("laplace", "gaussian"):
            raise InputError(f"distribution must be 'laplace' or 'gaussian', got {distribution!r}")
        if space not in ("probabilities", "logits"):
            raise InputError(f"space must be 'probabilities' or 'logits', got {space!r}")
        self.distribution: Distribution = distribution
        self.space: Space = space
        self.seed = check_int(seed, "seed", 0)

    def _noise(self, keys: torch.Tensor, classes: int) -> torch.Tensor:
        if self.distribution == "gaussian":
            return keyed_normal(keys, self.seed, 0, (classes,), dtype=torch.float64)
        centred = keyed_uniform(keys, self.seed, 0, (classes,), dtype=torch.float64) - 0.5
        return -centred.sign() * torch.log((1.0 - 2.0 * centred.abs()).clamp_min(MIN_PROBABILITY))

    def _apply(self, probabilities: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        if keys is None:
            raise InputError("noise is random: pass keys=(N,) int64 per-sample keys")
        noise = self.scale * self._noise(keys, probabilities.shape[1]).to(probabilities.device)
        p = probabilities.double()
        if self.space == "logits":
            noisy = torch.softmax(p.clamp_min(MIN_PROBABILITY).log() + noise, dim=1)
        else:
            noisy = (p + noise).clamp_min(0.0)
            total = noisy.sum(dim=1, keepdim=True)
            # A row the noise zeroed entirely falls back to the model's own row.
            noisy = torch.where(total > 0, noisy / total.clamp_min(MIN_PROBABILITY), p)
        return keep_top_class(p, noisy).to(probabilities.dtype)
