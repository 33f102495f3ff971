"""The ``Classifier`` protocol every attack, defense and evaluator talks to."""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch

from bastion.core.threat import Access

#: What the adapters' ``logits`` and ``predict`` take: a tensor, or a NumPy array converted by :func:`as_input`.
ModelInput: TypeAlias = torch.Tensor | np.ndarray


@runtime_checkable
class Classifier(Protocol):
    """A model as an attacker sees it.

    Attributes:
        num_classes: ``C``.
        input_shape: per-sample shape, e.g. ``(1, 28, 28)``.
        bounds: valid input range; inputs are in these units and any normalisation happens inside.
        access: the most the model offers: ``"white"`` (differentiable logits), ``"scores"``
            (scores without gradients) or ``"labels"`` (only the top label is meaningful).
        kind: a short description of the adapter (``torch``, ``onnx``, ...).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    bounds: tuple[float, float]
    access: Access
    kind: str

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, C)`` for inputs ``(N, *input_shape)``; differentiable when ``access == "white"``.

        For ``"labels"`` access the scores are one-hot: only their argmax may be used.
        """
        ...

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels ``(N,)`` int64."""
        ...


def as_input(x: object, method: str) -> torch.Tensor:
    """``x`` as the tensor a classifier's ``method`` (``"predict"``, ``"logits"``) runs on.

    A ``torch.Tensor`` is returned as it is (no copy, its dtype, device and gradient kept). A NumPy array of
    numbers becomes a float32 CPU tensor, sharing the array's memory when it already is contiguous, writable
    float32. Anything else is a ``TypeError`` that says what to pass.
    """
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        array = np.ascontiguousarray(x, dtype=np.float32)
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    got = f"a NumPy array of dtype {x.dtype}" if isinstance(x, np.ndarray) else \
        f"{type(x).__module__}.{type(x).__qualname__}"
    raise TypeError(f"{method} takes inputs (N, *input_shape) as a torch.Tensor or a NumPy array of numbers, got "
                    f"{got}; convert them first, e.g. np.asarray(x, dtype=np.float32)")


def predict_in_batches(model: Classifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Labels ``(N,)`` for many inputs without building one huge batch."""
    with torch.no_grad():
        return torch.cat([model.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


class QueryCounter:
    """Wraps a classifier and counts the samples passed through it (forward passes per sample)."""

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.num_classes = model.num_classes
        self.input_shape = model.input_shape
        self.bounds = model.bounds
        self.access = model.access
        self.kind = model.kind
        self.count = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        return self.model.logits(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        return self.model.predict(x)
