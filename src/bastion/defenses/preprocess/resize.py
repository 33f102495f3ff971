"""Random resize-and-pad: a random, differentiable step.

Paper: Xie, Wang, Zhang, Ren, Yuille, "Mitigating Adversarial Effects Through Randomization",
ICLR 2018 (there images are enlarged, then padded; here they shrink and are padded back, so the
model's input shape is kept).
Per sample and draw, a height ``h`` is drawn uniformly from ``ceil(min_scale * H)..H`` (the width
scales with it), the image is resized to ``h x w`` (bilinear) and placed at a random offset on an
``H x W`` canvas filled with the lower bound. All choices are keyed (:mod:`bastion.core.seeding`)
by ``seed``, the sample's key and the ``draw`` number. Images only, ``(N, C, H, W)`` or ``(N, H, W)``.
Default: min_scale 0.8, seed 0.

Example:
    >>> RandomResizePad(min_scale=0.75).fit()(images, draw=2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.core.seeding import keyed_randint
from bastion.defenses.preprocess.base import (
    Bounds,
    ImagePreprocessor,
    check_float,
    check_int,
    content_keys,
)


class RandomResizePad(ImagePreprocessor):
    """Shrink each image by a random factor in ``[min_scale, 1]`` and pad it back at a random offset."""

    name = "resize"
    spec_param = "min_scale"
    spec_type = float
    spec_help = "resize:MIN_SCALE (random resize-and-pad, 0 < min_scale <= 1, e.g. resize:0.8)"
    differentiable = True
    random = True

    def __init__(self, min_scale: float = 0.8, seed: int = 0) -> None:
        self.min_scale = check_float(min_scale, "resize min_scale", high=1.0)
        self.seed = check_int(seed, "seed", 0)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        keys = content_keys(x) if keys is None else keys
        images = x if x.ndim == 4 else x[:, None]
        height, width = images.shape[-2:]
        smallest = max(1, math.ceil(self.min_scale * height))
        keys = keys.to(torch.int64).cpu()
        sizes = smallest + keyed_randint(keys, self.seed, 3 * draw, height - smallest + 1)
        widths = torch.clamp(torch.round(sizes * (width / height)), 1, width).to(torch.int64)
        tops = keyed_randint(keys, self.seed, 3 * draw + 1, height - sizes + 1)
        lefts = keyed_randint(keys, self.seed, 3 * draw + 2, width - widths + 1)
        canvas = torch.full_like(images, bounds[0])
        placements = torch.stack([sizes, widths, tops, lefts], dim=1)
        # One resize per distinct (size, offset), not per sample.
        for h, w, top, left in placements.unique(dim=0).tolist():
            index = (placements == torch.tensor([h, w, top, left])).all(dim=1).nonzero().squeeze(1).to(x.device)
            small = F.interpolate(images[index], size=(h, w), mode="bilinear", align_corners=False)
            canvas[index, :, top : top + h, left : left + w] = small
        return canvas.reshape(x.shape)
