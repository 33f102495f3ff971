"""Gaussian noise injection: a random, differentiable step.

Paper: in the spirit of Liu et al., "Towards Robust Neural Networks via Random Self-ensemble",
ECCV 2018 (noise at the input layer); Athalye, Carlini, Wagner, ICML 2018 show that such randomness
is defeated by Expectation over Transformation (EOT).
Adds ``sigma * n`` with ``n`` standard normal, then clips to the bounds. ``sigma`` is in input units.
The noise is keyed (:func:`bastion.core.seeding.keyed_normal`) by ``seed``, the sample's key and the
``draw`` number: reproducible, and independent between samples and between draws. Any input shape.
Default: sigma 0.1, seed 0.

Example:
    >>> GaussianNoise(sigma=0.1, seed=3).fit()(x, draw=0)
"""

from __future__ import annotations

import torch

from bastion.core.seeding import keyed_normal
from bastion.defenses.preprocess.base import Bounds, Preprocessor, check_float, check_int, content_keys


class GaussianNoise(Preprocessor):
    """Add keyed Gaussian noise of standard deviation ``sigma`` (> 0, input units) and clip to the bounds."""

    name = "noise"
    spec_param = "sigma"
    spec_type = float
    spec_help = "noise:SIGMA (Gaussian noise, sigma > 0 in input units, e.g. noise:0.1)"
    differentiable = True
    random = True

    def __init__(self, sigma: float = 0.1, seed: int = 0) -> None:
        self.sigma = check_float(sigma, "noise sigma")
        self.seed = check_int(seed, "seed", 0)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        keys = content_keys(x) if keys is None else keys
        noise = keyed_normal(keys, self.seed, draw, tuple(x.shape[1:]), dtype=x.dtype).to(x.device)
        return (x + self.sigma * noise).clamp(*bounds)
