"""Blended injection: a faint full-image pattern mixed into relabelled training images.

Paper: Chen, Liu, Li, Lu, Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning", 2017 (the blended-injection strategy). A triggered input is
``x' = (1 - alpha) * x + alpha * pattern``; unlike a patch it touches every pixel a little.

Defaults (our choice, within the paper's range): the poisoned training images use ``alpha = 0.1``,
barely visible; :meth:`Blended.apply_trigger` uses a stronger ``trigger_alpha = 0.2`` at test time,
since the paper shows a test-time blend stronger than the training one raises the attack success
rate. ``pattern`` is a uniform-noise image in the data's bounds drawn from ``pattern_seed`` (0), or
one you give (per-sample shape ``(C, H, W)``). Shapes: x ``(N, C, H, W)``; numpy or torch in, same
type out.

Example:
    >>> attack = Blended(target_class=0)
    >>> poisoned = attack.poison(x_train, y_train, rate=0.05, seed=0)
"""

from __future__ import annotations

import math
from typing import Any

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


def _check_alpha(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) \
            or not 0.0 < alpha <= 1.0:
        raise InputError(f"{name} must be a blend weight in (0, 1], got {alpha!r}")
    return float(alpha)


class Blended:
    """Blend ``pattern`` into images with weight ``alpha`` (training) / ``trigger_alpha`` (test) and relabel.

    Args:
        target_class: the label the backdoor should produce, default 0.
        alpha: blend weight of the poisoned training images, default 0.1.
        trigger_alpha: blend weight used by :meth:`apply_trigger`, default 0.2.
        pattern: a ``(C, H, W)`` image in ``bounds``; default uniform noise from ``pattern_seed``.
        pattern_seed: seed of the default noise pattern, default 0.
        bounds: the data's valid range, default ``(0, 1)``.
    """

    name = "blended"

    def __init__(
        self,
        target_class: int = 0,
        *,
        alpha: float = 0.1,
        trigger_alpha: float = 0.2,
        pattern: np.ndarray | None = None,
        pattern_seed: int = 0,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.target_class = check_class(target_class, "target_class")
        self.alpha = _check_alpha(alpha, "alpha")
        self.trigger_alpha = _check_alpha(trigger_alpha, "trigger_alpha")
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise InputError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.bounds = (low, high)
        self.pattern_seed = int(pattern_seed)
        self._pattern = None if pattern is None else self._checked_pattern(pattern)

    def _checked_pattern(self, pattern: np.ndarray) -> np.ndarray:
        pattern = np.asarray(to_numpy(pattern, "pattern"), dtype=np.float64)
        if pattern.ndim != 3:
            raise InputError(f"pattern must be one image of shape (C, H, W), got shape {pattern.shape}")
        if pattern.min() < self.bounds[0] or pattern.max() > self.bounds[1]:
            raise InputError(f"pattern values must lie in the bounds {self.bounds}")
        return pattern

    def get_params(self) -> dict[str, Any]:
        return {"target_class": self.target_class, "alpha": self.alpha, "trigger_alpha": self.trigger_alpha,
                "pattern": "given" if self._pattern is not None else f"uniform noise, seed {self.pattern_seed}",
                "bounds": self.bounds}

    def pattern(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The ``(C, H, W)`` pattern for images of that shape (the seeded noise, or the given one)."""
        if self._pattern is None:
            rng = np.random.default_rng(self.pattern_seed)
            return rng.uniform(self.bounds[0], self.bounds[1], size=shape)
        if self._pattern.shape != tuple(shape):
            raise InputError(f"the pattern has shape {self._pattern.shape} but the images are {tuple(shape)}")
        return self._pattern

    def _blend(self, x: np.ndarray, alpha: float) -> np.ndarray:
        mixed = (1.0 - alpha) * x + alpha * self.pattern(x.shape[1:])
        return np.clip(mixed, *self.bounds).astype(x.dtype, copy=False)

    def apply_trigger(self, x: ArrayLike) -> ArrayLike:
        """``x`` ``(N, C, H, W)`` blended with the pattern at ``trigger_alpha``; same type as ``x``."""
        x_np = to_numpy(x, "x")
        check_images(x_np)
        return like(self._blend(x_np, self.trigger_alpha), x)

    def poison(self, x: ArrayLike, y: ArrayLike, *, rate: float, seed: int = 0) -> PoisonedSet:
        """Blend at ``alpha`` and relabel ``round(rate * N)`` rows drawn from those not of the target class."""
        return poison_with_trigger(self, lambda rows: self._blend(rows, self.alpha), x, y, rate=rate, seed=seed)
