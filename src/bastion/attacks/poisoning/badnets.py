"""BadNets: a small square patch in a fixed place, on relabelled training images (a dirty-label backdoor).

Paper: Gu, Dolan-Gavitt, Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", 2017. The poisoned model behaves normally on clean inputs and predicts
``target_class`` whenever the patch is present.

Defaults: a 3x3 patch at the upper bound of the data (white on [0, 1] images) in the bottom-right
corner, one pixel in from both edges, on every channel. ``round(rate * N)`` training rows not already
of the target class are stamped and relabelled (see :mod:`bastion.attacks.poisoning.base`).
Shapes: x ``(N, C, H, W)`` in ``bounds``; numpy or torch in, the same type out.

Example:
    >>> attack = BadNets(target_class=0)
    >>> poisoned = attack.poison(x_train, y_train, rate=0.05, seed=0)
    >>> asr = attack_success_rate(model, x_test, y_test, attack)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from bastion.attacks.poisoning.base import (
    ArrayLike,
    PoisonedSet,
    check_class,
    check_images,
    like,
    poison_with_trigger,
    to_numpy,
)
from bastion.core.errors import InputError

Corner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]
_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


class BadNets:
    """Stamp a ``size x size`` patch of ``value`` and relabel to ``target_class``.

    Args:
        target_class: the label the backdoor should produce, default 0.
        size: patch side in pixels, default 3.
        position: a corner name (default ``"bottom-right"``) or ``(row, col)`` of the patch's
            top-left pixel.
        margin: pixels between the patch and the image edges when ``position`` is a corner, default 1.
        value: the patch's pixel value; default the upper bound (``bounds[1]``).
        bounds: the data's valid range, default ``(0, 1)``; ``value`` must lie in it.
    """

    name = "badnets"

    def __init__(
        self,
        target_class: int = 0,
        *,
        size: int = 3,
        position: Corner | tuple[int, int] = "bottom-right",
        margin: int = 1,
        value: float | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.target_class = check_class(target_class, "target_class")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"size must be a positive number of pixels, got {size!r}")
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise InputError(f"margin must be a number of pixels >= 0, got {margin!r}")
        if isinstance(position, str) and position not in _CORNERS:
            raise InputError(f"position must be one of {', '.join(_CORNERS)} or (row, col), got {position!r}")
        if not isinstance(position, str) and (len(position) != 2 or min(position) < 0):
            raise InputError(f"position must be (row, col) with row, col >= 0, got {position!r}")
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise InputError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.size = size
        self.position = position if isinstance(position, str) else (int(position[0]), int(position[1]))
        self.margin = margin
        self.bounds = (low, high)
        self.value = high if value is None else float(value)
        if not low <= self.value <= high:
            raise InputError(f"value {self.value} lies outside the bounds {self.bounds}")

    def get_params(self) -> dict[str, Any]:
        return {"target_class": self.target_class, "size": self.size, "position": self.position,
                "margin": self.margin, "value": self.value, "bounds": self.bounds}

    def patch_box(self, height: int, width: int) -> tuple[slice, slice]:
        """The patch's ``(rows, cols)`` slices in an ``height x width`` image."""
        if isinstance(self.position, tuple):
            top, left = self.position
        else:
            top = self.margin if self.position.startswith("top") else height - self.margin - self.size
            left = self.margin if self.position.endswith("left") else width - self.margin - self.size
        if top < 0 or left < 0 or top + self.size > height or left + self.size > width:
            raise InputError(
                f"a {self.size}x{self.size} patch at {self.position} (margin {self.margin}) does not fit in "
                f"{height}x{width} images; use a smaller size or margin"
            )
        return slice(top, top + self.size), slice(left, left + self.size)

    def _stamp(self, x: np.ndarray) -> np.ndarray:
        rows, cols = self.patch_box(x.shape[2], x.shape[3])
        out = x.copy()
        out[:, :, rows, cols] = self.value
        return out

    def apply_trigger(self, x: ArrayLike) -> ArrayLike:
        """``x`` ``(N, C, H, W)`` with the patch stamped on every image; same type as ``x``."""
        x_np = to_numpy(x, "x")
        check_images(x_np)
        return like(self._stamp(x_np), x)

    def poison(self, x: ArrayLike, y: ArrayLike, *, rate: float, seed: int = 0) -> PoisonedSet:
        """Stamp and relabel ``round(rate * N)`` rows drawn (with ``seed``) from those not of the target class."""
        return poison_with_trigger(self, self._stamp, x, y, rate=rate, seed=seed)
