"""Median filter (spatial smoothing).

Paper: Xu, Evans, Qi, "Feature Squeezing", NDSS 2018 (local median smoothing).
Each pixel of each channel is replaced by the median of the ``size x size`` window around it;
borders use reflect padding (``dcb|abcd|cba``), so ``size // 2`` must be smaller than the image's
height and width. For an even window the lower of the two middle values is taken.
Differentiable almost everywhere: autograd sends each output's gradient to the input pixel that is
the median, the exact gradient of this piecewise-linear map. Deterministic. Images only,
``(N, C, H, W)`` or ``(N, H, W)``. Default: 3 x 3.

Example:
    >>> MedianFilter(size=3).fit()(images)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.core.errors import InputError
from bastion.defenses.preprocess.base import Bounds, ImagePreprocessor, as_planes, check_int


class MedianFilter(ImagePreprocessor):
    """``size x size`` median over each channel, reflect-padded (size >= 1)."""

    name = "median"
    spec_param = "size"
    spec_type = int
    spec_help = "median:K (window size in pixels, an integer >= 1, e.g. median:3)"
    differentiable = True
    random = False

    def __init__(self, size: int = 3) -> None:
        self.size = check_int(size, "median window size", 1)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        if self.size == 1:
            return x
        height, width = x.shape[-2:]
        before, after = (self.size - 1) // 2, self.size // 2
        if max(before, after) >= min(height, width):
            raise InputError(f"a median window of {self.size} needs images larger than {max(before, after)} "
                             f"pixels a side for reflect padding; these are {height}x{width}")
        padded = F.pad(as_planes(x), (before, after, before, after), mode="reflect")
        windows = padded.unfold(2, self.size, 1).unfold(3, self.size, 1)
        return windows.reshape(*windows.shape[:4], -1).median(dim=-1).values.reshape(x.shape)
