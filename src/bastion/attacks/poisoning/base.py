"""The poisoning contract: an attack turns a clean training set into a poisoned one it can account for.

A poisoning attack is called as ``attack.poison(x, y, rate=..., seed=...)`` and returns a
:class:`PoisonedSet`: the poisoned arrays plus exactly which rows were changed and how. A backdoor
attack also offers ``apply_trigger(x)``, which stamps its trigger on test inputs; together with
:func:`attack_success_rate` that measures whether the backdoor took.

Conventions shared by every attack in this package:

- ``rate`` is the fraction of the *whole* training set that is poisoned, in ``[0, 1]``:
  ``round(rate * N)`` rows are changed (the usual meaning of "5% poisoning"). Rows are drawn only
  from the eligible ones (for a backdoor: rows not already of the target class); too few eligible
  rows is an error, never a silent shortfall.
- Poisoning replaces rows in place: the poisoned set has the same length and order as the input, so
  ``source_indices`` are positions in both.
- ``x`` is ``(N, ...)`` (images ``(N, C, H, W)`` for triggers) in the data's bounds, as a NumPy array
  or a torch tensor; the result has the type (and for tensors the dtype and device) of the input.
- The same ``seed`` always picks the same rows and, for random label flips, the same new labels.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.models.base import Classifier, predict_in_batches

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class PoisonedSet:
    """A training set after poisoning.

    Attributes:
        x: ``(N, ...)`` inputs, poisoned rows included; same type as the attack's input.
        y: ``(N,)`` labels, poisoned rows relabelled where the attack relabels; same type as the input.
        poisoned: ``(N,)`` bool NumPy mask of the rows the attack changed.
        source_indices: ``(P,)`` int64 positions (sorted) of the changed rows, in the input and in ``x``.
        original_labels: ``(P,)`` int64 labels those rows had before poisoning.
        params: the attack's name and parameters, plus ``rate`` and ``seed``, for the evidence record.
    """

    x: ArrayLike
    y: ArrayLike
    poisoned: np.ndarray
    source_indices: np.ndarray
    original_labels: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """``P``, the number of poisoned rows."""
        return int(self.poisoned.sum())

    @property
    def rate(self) -> float:
        """The achieved poisoning rate ``P / N``."""
        return self.count / max(len(self.poisoned), 1)


@runtime_checkable
class PoisoningAttack(Protocol):
    """Anything that poisons a training set; ``get_params()`` goes into the evidence record."""

    name: str

    def poison(self, x: ArrayLike, y: ArrayLike, *, rate: float, seed: int = 0) -> PoisonedSet:
        """Poison ``round(rate * N)`` rows of ``x`` ``(N, ...)`` / ``y`` ``(N,)``."""
        ...

    def get_params(self) -> dict[str, Any]: ...


@runtime_checkable
class BackdoorAttack(PoisoningAttack, Protocol):
    """A poisoning attack with a trigger: triggered inputs should be classified as ``target_class``."""

    target_class: int

    def apply_trigger(self, x: ArrayLike) -> ArrayLike:
        """``x`` ``(N, C, H, W)`` with the trigger applied, same type, shape and bounds."""
        ...


# --- checks and conversions shared by the attacks ------------------------------------------------------


def to_numpy(values: ArrayLike, name: str) -> np.ndarray:
    """A NumPy view/copy of a NumPy array or torch tensor; :class:`InputError` for anything else."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        return values
    raise InputError(f"{name} must be a NumPy array or a torch tensor, got {type(values).__name__}")


def like(values: np.ndarray, reference: ArrayLike) -> ArrayLike:
    """``values`` as the type of ``reference``: a tensor on its device with its dtype, or a NumPy array."""
    if isinstance(reference, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(values)).to(device=reference.device, dtype=reference.dtype)
    return values.astype(reference.dtype, copy=False)


def check_rate(rate: object) -> float:
    """``rate`` as a float in ``[0, 1]``."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate) \
            or not 0.0 <= rate <= 1.0:
        raise InputError(f"rate must be a fraction of the training set in [0, 1], got {rate!r}")
    return float(rate)


def check_labels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y`` as int64 ``(N,)`` matching ``x``'s first dimension."""
    if y.ndim != 1:
        raise InputError(f"y must have shape (N,), got {y.shape}")
    if x.ndim < 1 or len(x) != len(y):
        raise InputError(f"x and y must have the same length, got x of shape {x.shape} and y of shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"y must hold integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def check_images(x: np.ndarray) -> None:
    """Triggers are stamped on images: ``x`` must be ``(N, C, H, W)`` floating point."""
    if x.ndim != 4:
        raise InputError(f"x must be images of shape (N, C, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"x must be floating point in the data's bounds, got dtype {x.dtype}")


def check_class(value: object, name: str) -> int:
    """A class index ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise InputError(f"{name} must be a class index >= 0, got {value!r}")
    return int(value)


def choose_rows(eligible: np.ndarray, count: int, seed: int, what: str) -> np.ndarray:
    """``count`` distinct positions drawn from ``eligible`` with ``seed``, sorted."""
    if count > len(eligible):
        raise InputError(f"cannot poison {count} rows: only {len(eligible)} are eligible ({what}); lower the rate")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, size=count, replace=False)).astype(np.int64)


def poison_count(rate: float, n: int) -> int:
    """``round(rate * n)``, the number of rows a rate asks for."""
    return int(round(rate * n))


# --- measuring a backdoor ----------------------------------------------------------------------------


def attack_success_rate(
    classifier: Classifier,
    x_test: ArrayLike,
    y_test: ArrayLike,
    attack: BackdoorAttack,
    target_class: int | None = None,
    *,
    batch_size: int = 512,
) -> float:
    """The fraction of triggered test inputs classified as the target, over inputs not of the target class.

    Args:
        classifier: the (possibly backdoored) model.
        x_test: ``(N, C, H, W)`` clean test inputs in the model's bounds. y_test: ``(N,)`` true labels.
        attack: the backdoor whose ``apply_trigger`` stamps the trigger.
        target_class: the class the backdoor aims for; default ``attack.target_class``.
        batch_size: inputs per forward pass, default 512.

    Returns:
        ASR in ``[0, 1]``; samples whose true label is the target are left out (for them the
        "attack" would succeed trivially).

    Raises:
        InputError: mismatched lengths, or no test point outside the target class.
    """
    x_np = to_numpy(x_test, "x_test")
    y_np = check_labels(x_np, to_numpy(y_test, "y_test"))
    target = check_class(attack.target_class if target_class is None else target_class, "target_class")
    keep = np.flatnonzero(y_np != target)
    if len(keep) == 0:
        raise InputError(f"every test point is of the target class {target}; attack success needs other classes")
    triggered = to_numpy(attack.apply_trigger(x_np[keep]), "triggered inputs")
    inputs = torch.from_numpy(np.ascontiguousarray(triggered, dtype=np.float32))
    device = getattr(classifier, "device", None)
    if isinstance(device, torch.device):
        inputs = inputs.to(device)
    predictions = predict_in_batches(classifier, inputs, batch_size).cpu().numpy()
    return float(np.mean(predictions == target))


def poison_with_trigger(
    attack: BackdoorAttack,
    stamp: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    rate: float,
    seed: int,
) -> PoisonedSet:
    """The dirty-label backdoor recipe shared by BadNets and blended triggers.

    ``round(rate * N)`` rows not already of ``attack.target_class`` get the trigger (``stamp``, a
    function from ``(P, C, H, W)`` NumPy images to triggered ones) and the target label.
    """
    rate = check_rate(rate)
    x_np = to_numpy(x, "x")
    check_images(x_np)
    y_np = check_labels(x_np, to_numpy(y, "y"))
    target = attack.target_class
    eligible = np.flatnonzero(y_np != target)
    rows = choose_rows(eligible, poison_count(rate, len(y_np)), seed, f"rows not of the target class {target}")
    new_x = x_np.copy()
    new_x[rows] = stamp(x_np[rows])
    new_y = y_np.copy()
    new_y[rows] = target
    mask = np.zeros(len(y_np), dtype=bool)
    mask[rows] = True
    params = {"attack": attack.name, **attack.get_params(), "rate": rate, "seed": seed}
    return PoisonedSet(like(new_x, x), like(new_y, y), mask, rows, y_np[rows].copy(), params)
