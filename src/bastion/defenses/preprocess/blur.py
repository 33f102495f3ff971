"""Gaussian blur: a deterministic, differentiable smoothing step.

Each channel is convolved with a normalised Gaussian kernel of standard deviation ``sigma`` pixels,
truncated at ``radius`` (default ``ceil(3 * sigma)``), separably (rows then columns). Borders
replicate the edge pixel, so any radius works on any image size. The output is a convex
combination of inputs, so it stays in the bounds. Images only, ``(N, C, H, W)`` or ``(N, H, W)``. Default: sigma 1.0.

Example:
    >>> GaussianBlur(sigma=0.5).fit()(images)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.defenses.preprocess.base import Bounds, ImagePreprocessor, as_planes, check_float, check_int


class GaussianBlur(ImagePreprocessor):
    """Separable Gaussian blur with standard deviation ``sigma`` > 0 pixels (radius >= 0 or ``None``)."""

    name = "blur"
    spec_param = "sigma"
    spec_type = float
    spec_help = "blur:SIGMA (Gaussian blur, sigma > 0 pixels, e.g. blur:1.0)"
    differentiable = True
    random = False

    def __init__(self, sigma: float = 1.0, radius: int | None = None) -> None:
        self.sigma = check_float(sigma, "blur sigma")
        self.radius = None if radius is None else check_int(radius, "blur radius", 0)

    def kernel(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The 1-D kernel, shape ``(2 * radius + 1,)``, summing to 1."""
        radius = math.ceil(3 * self.sigma) if self.radius is None else self.radius
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        weights = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        return (weights / weights.sum()).to(dtype)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        kernel = self.kernel(x.dtype).to(x.device)
        radius = (len(kernel) - 1) // 2
        if radius == 0:
            return x
        planes = F.pad(as_planes(x), (radius, radius, radius, radius), mode="replicate")
        planes = F.conv2d(planes, kernel.reshape(1, 1, 1, -1))
        planes = F.conv2d(planes, kernel.reshape(1, 1, -1, 1))
        # Rounding in the convolution can step a hair outside the bounds; clip it back.
        return planes.reshape(x.shape).clamp(*bounds)
