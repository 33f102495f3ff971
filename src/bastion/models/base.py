"""The ``Classifier`` protocol every attack, defense and evaluator talks to."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from bastion.core.threat import Access


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
