"""Label flipping: relabel a fraction of the training set, at random or from one class to another.

Threat: an attacker who can edit labels but not inputs (a crowd-sourcing worker, a compromised
labelling pipeline). No trigger: the damage is lower accuracy, or a targeted confusion
``source -> target``. The detector that answers it is the label-issue audit (confident learning).

Modes:
    - ``LabelFlip()``: ``round(rate * N)`` rows drawn from all rows, each given a different label
      drawn uniformly from the other classes.
    - ``LabelFlip(source=3)``: rows drawn from class 3 only, each given a random other label.
    - ``LabelFlip(source=3, target=8)``: rows drawn from class 3, all relabelled 8.
    - ``LabelFlip(target=8)``: rows drawn from every class but 8, all relabelled 8.

Shapes: x ``(N, ...)`` is returned unchanged (a copy of the reference is not made); y ``(N,)`` int.

Example:
    >>> flipped = LabelFlip(source=3, target=8).poison(x, y, rate=0.05, seed=0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bastion.attacks.poisoning.base import (
    ArrayLike,
    PoisonedSet,
    check_class,
    check_labels,
    check_rate,
    choose_rows,
    like,
    poison_count,
    to_numpy,
)
from bastion.core.errors import InputError


class LabelFlip:
    """Flip ``rate`` of the labels, optionally only from ``source`` and/or only to ``target``.

    Args:
        num_classes: ``C``; default ``max(y) + 1`` of the data being poisoned.
        source: draw the flipped rows from this class only; default any class.
        target: relabel every flipped row to this class; default a random class other than its own.
    """

    name = "label-flip"

    def __init__(self, num_classes: int | None = None, *, source: int | None = None,
                 target: int | None = None) -> None:
        if num_classes is not None and (check_class(num_classes, "num_classes") < 2):
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.source = None if source is None else check_class(source, "source")
        self.target = None if target is None else check_class(target, "target")
        if self.source is not None and self.source == self.target:
            raise InputError(f"source and target are the same class ({source}); nothing would change")

    def get_params(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "source": self.source, "target": self.target}

    def poison(self, x: ArrayLike, y: ArrayLike, *, rate: float, seed: int = 0) -> PoisonedSet:
        """Flip ``round(rate * N)`` labels; ``x`` comes back as given. See the module docstring for modes."""
        rate = check_rate(rate)
        x_np = to_numpy(x, "x")
        y_np = check_labels(x_np, to_numpy(y, "y"))
        classes = self._classes(y_np)
        eligible = np.arange(len(y_np))
        if self.source is not None:
            eligible = eligible[y_np == self.source]
        if self.target is not None:
            eligible = eligible[y_np[eligible] != self.target]
        what = f"source class {self.source}" if self.source is not None else "rows not of the target class"
        rows = choose_rows(eligible, poison_count(rate, len(y_np)), seed, what)
        new_y = y_np.copy()
        if self.target is not None:
            new_y[rows] = self.target
        else:
            # A uniform draw among the other C - 1 classes: shift by 1..C-1 modulo C.
            shift = np.random.default_rng([seed, 1]).integers(1, classes, size=len(rows))
            new_y[rows] = (y_np[rows] + shift) % classes
        mask = np.zeros(len(y_np), dtype=bool)
        mask[rows] = True
        params = {"attack": self.name, **self.get_params(), "num_classes": classes, "rate": rate, "seed": seed}
        return PoisonedSet(x, like(new_y, y), mask, rows, y_np[rows].copy(), params)

    def _classes(self, y: np.ndarray) -> int:
        observed = int(y.max()) + 1 if y.size else 2
        if y.size and int(y.min()) < 0:
            raise InputError(f"labels must be class indices >= 0, got a minimum of {int(y.min())}")
        classes = observed if self.num_classes is None else self.num_classes
        if classes < observed:
            raise InputError(f"labels go up to {observed - 1} but num_classes is {classes}")
        for name, value in (("source", self.source), ("target", self.target)):
            if value is not None and value >= classes:
                raise InputError(f"{name} class {value} does not exist (num_classes is {classes})")
        return max(classes, 2)
