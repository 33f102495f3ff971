"""Arrays as a reader found them, before validation turns them into a ``Dataset``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RawArrays:
    """Arrays as a reader found them, before validation; ``ids`` when the samples have stored ids."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str] | None
    source: str
    bounds: tuple[float, float] | None = None
    ids: tuple[str, ...] | None = None
