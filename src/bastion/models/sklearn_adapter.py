"""Adapter for a fitted scikit-learn estimator: a black-box classifier (scores or labels only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.models.base import ModelInput, as_input

#: Probabilities are clamped here before the log, so a zero probability gives a finite score.
MIN_PROBABILITY = 1e-12


class SklearnClassifier:
    """A classifier around a fitted scikit-learn estimator (or pipeline).

    Args:
        estimator: fitted, with ``predict`` and ``classes_`` equal to ``0 .. C-1``.
        input_shape: per-sample shape; inputs ``(N, *input_shape)`` are flattened to
            ``(N, prod(input_shape))`` for the estimator.
        bounds: valid input range, default ``(0, 1)``.

    ``access`` is ``"scores"`` when the estimator has ``predict_proba`` (logits are the log of the
    probabilities, clamped at ``1e-12``), else ``"labels"`` (logits are one-hot predictions).
    Outputs are on the input's device and dtype and carry no gradients.
    """

    kind = "sklearn"

    def __init__(
        self,
        estimator: Any,
        *,
        input_shape: Sequence[int],
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise InputError(f"{type(estimator).__name__} has no predict method; not a classifier")
        self.estimator = estimator
        self.input_shape = tuple(int(d) for d in input_shape)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.num_classes = check_classes(estimator)
        _check_features(estimator, self.input_shape)
        self.access: Access = "scores" if hasattr(estimator, "predict_proba") else "labels"

    def logits(self, x: ModelInput) -> torch.Tensor:
        """Log-probabilities (or one-hot labels) ``(N, C)`` for ``x`` ``(N, *input_shape)``, a tensor or a NumPy
        array."""
        x = as_input(x, "logits")
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"input has per-sample shape {tuple(x.shape[1:])}; the estimator expects "
                f"{self.input_shape}"
            )
        rows = x.detach().cpu().numpy().reshape(len(x), -1)
        if self.access == "scores":
            probabilities = np.asarray(self.estimator.predict_proba(rows), dtype=np.float64)
            scores = np.log(np.clip(probabilities, MIN_PROBABILITY, None))
        else:
            labels = np.asarray(self.estimator.predict(rows), dtype=np.int64)
            scores = np.eye(self.num_classes)[labels]
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        return torch.from_numpy(scores).to(device=x.device, dtype=dtype)

    def predict(self, x: ModelInput) -> torch.Tensor:
        """Labels ``(N,)`` int64 for a tensor or a NumPy array (see :func:`~bastion.models.base.as_input`)."""
        return self.logits(as_input(x, "predict")).argmax(dim=1)


def check_classes(estimator: Any) -> int:
    """``C`` when ``estimator.classes_`` is exactly ``0 .. C-1``; a clear error otherwise."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise InputError(
            f"{type(estimator).__name__} has no classes_: fit it before handing it to bastion"
        )
    classes = np.asarray(classes)
    expected = np.arange(len(classes))
    if classes.dtype.kind not in "iuf" or not np.array_equal(classes, expected):
        shown = ", ".join(str(c) for c in classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise InputError(
            f"the estimator's classes are [{shown}]; bastion needs integer classes 0..C-1. "
            "Re-fit it on labels encoded with sklearn.preprocessing.LabelEncoder"
        )
    if len(classes) < 2:
        raise InputError(f"a classifier needs at least 2 classes, got {len(classes)}")
    return len(classes)


def _check_features(estimator: Any, input_shape: tuple[int, ...]) -> None:
    expected = getattr(estimator, "n_features_in_", None)
    flat = int(np.prod(input_shape))
    if expected is not None and int(expected) != flat:
        raise InputError(
            f"input_shape {input_shape} has {flat} features but the estimator was fitted on "
            f"{int(expected)}"
        )
