"""The input-detector contract: score each input by how suspicious it is, flag it above a calibrated threshold.

A detector is fitted once on clean reference inputs the model was **not** trained on (scores on a
model's own training data are over-confident, so a threshold set there lets more clean traffic through
the flag). ``fit`` scores them and sets ``threshold_`` to the ``1 - false_positive_rate`` quantile
of their scores, so about that fraction of clean inputs is flagged. ``score`` is ``(N,)`` float32,
higher = more suspicious; ``flags`` is ``scores > threshold_``.

The gateway calls ``score(model, x, logits=...)`` with the logits it already computed for the
answer, so detectors that only read logits (confidence, energy) add no forward pass; the others
run what they need themselves (squeezed copies, penultimate features).

Scikit-learn contract: parameters in ``__init__`` (validated there, so a bad value fails at
construction), ``fit`` returns ``self``, learned state ends in ``_``, :meth:`InputDetector.get_params`
goes into the evidence. Fitting is deterministic: the same model and data give the same state, bit
for bit (on one device and thread count).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.models.base import Classifier

#: Samples per forward pass when a detector scores many inputs (fitting on a reference set).
SCORE_BATCH = 512


class InputDetector(ABC):
    """Base class of the input detectors.

    Subclasses set ``name`` and implement :meth:`_score`; one that learns more than the threshold
    overrides :meth:`fit` with :meth:`_checked_reference` and :meth:`_set_threshold`.
    ``needs_scores`` says the detector reads the model's scores, which a label-only model
    (``access == "labels"``) does not give.

    Learned state after :meth:`fit`: ``threshold_`` (float), ``false_positive_rate_`` (the target),
    ``reference_size_`` (N).
    """

    name: ClassVar[str]
    needs_scores: ClassVar[bool] = True

    def fit(self, model: Classifier, x_reference: torch.Tensor, *, false_positive_rate: float = 0.05) -> Self:
        """Learn the detector's state on clean ``x_reference`` ``(N, *input_shape)`` and set ``threshold_``.

        Args:
            model: the classifier the detector guards.
            x_reference: clean inputs in the model's bounds, ideally held out from the model's training.
            false_positive_rate: the fraction of clean inputs to flag, in (0, 1), default 0.05.
                At least ``ceil(1 / false_positive_rate)`` reference inputs are needed.

        Raises:
            InputError: a bad rate, too few inputs, a wrong shape, or a label-only model.
        """
        rate, x = self._checked_reference(model, x_reference, false_positive_rate)
        return self._set_threshold(self._score_batched(model, x), rate)

    def score(self, model: Classifier, x: torch.Tensor, *, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Suspicion scores ``(N,)`` float32 (CPU) of inputs ``x`` ``(N, *input_shape)``; higher = more suspicious.

        Args:
            model: the classifier the detector was fitted with.
            x: inputs in the model's bounds.
            logits: ``(N, C)`` logits of ``x`` when the caller already has them (saves a forward pass).

        Raises:
            InputError: the detector is not fitted, or ``x`` / ``logits`` have the wrong shape.
        """
        self._check_fitted()
        self._check_model(model)
        x = check_inputs(model, x, "x")
        if logits is not None:
            logits = check_logits(logits, len(x), model.num_classes)
        return self._score(model, x, logits).detach().float().cpu()

    def score_checked(self, model: Classifier, x: torch.Tensor, *, logits: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """:meth:`score` without checking the model, ``x`` and ``logits`` again, for a caller that checked them
        already (the gateway validates every request before its detectors run; the checks cost more than an
        energy score). The detector must be fitted with this ``model``."""
        return self._score(model, x, logits).detach().float().cpu()

    def flags(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: ``scores > threshold_`` for scores ``(N,)`` from :meth:`score`."""
        self._check_fitted()
        if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
            raise InputError(f"scores must be a 1-D tensor (N,) from score(), got {getattr(scores, 'shape', scores)!r}")
        return scores > self.threshold_

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, for the evidence record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def _checked_reference(self, model: Classifier, x_reference: object, rate: object) -> tuple[float, torch.Tensor]:
        """The checked false-positive rate and reference inputs of :meth:`fit`."""
        rate = check_rate(rate)
        self._check_model(model)
        x = check_inputs(model, x_reference, "x_reference")
        needed = max(2, math.ceil(1.0 / rate - 1e-9))
        if len(x) < needed:
            raise InputError(f"x_reference has {len(x)} sample(s); a false-positive rate of {rate:g} needs at least "
                             f"{needed} clean reference inputs to set a threshold")
        return rate, x

    def _set_threshold(self, reference_scores: torch.Tensor, rate: float) -> Self:
        """``threshold_``: the ``1 - rate`` quantile of the clean scores ``(N,)``; returns ``self``."""
        self.threshold_ = float(np.quantile(reference_scores.double().numpy(), 1.0 - rate))
        self.false_positive_rate_ = rate
        self.reference_size_ = len(reference_scores)
        return self

    @abstractmethod
    def _score(self, model: Classifier, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        """Scores ``(N,)`` of checked inputs; ``logits`` are checked ``(N, C)`` or ``None``."""

    def _score_batched(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = [self._score(model, x[i : i + SCORE_BATCH], None).detach().float().cpu()
                     for i in range(0, len(x), SCORE_BATCH)]
        return torch.cat(parts)

    def _check_model(self, model: Classifier) -> None:
        if not isinstance(model, Classifier):
            raise InputError(f"model must be a bastion Classifier (logits, predict, num_classes, ...), "
                             f"got {type(model).__name__}")
        if self.needs_scores and model.access == "labels":
            raise InputError(f"the {self.name} detector reads the model's scores, but this model is label-only "
                             "(access 'labels'); use it on a model with scores")

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise InputError(f"the {self.name} detector is not fitted: call fit(model, x_reference) first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def model_logits(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """``model.logits(x)`` without gradients, with ``x`` on the model's device when it has one."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        x = x.to(device)
    with torch.no_grad():
        return model.logits(x).detach()


def check_rate(rate: object) -> float:
    """``rate`` as a float strictly between 0 and 1; :class:`InputError` otherwise."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 < float(rate) < 1.0:
        raise InputError(f"false_positive_rate must be a number strictly between 0 and 1 (e.g. 0.05), got {rate!r}")
    return float(rate)


def check_inputs(model: Classifier, x: object, name: str) -> torch.Tensor:
    """``x`` as a floating tensor ``(N, *model.input_shape)`` with finite values, ``N >= 1``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor (N, {', '.join(map(str, model.input_shape))}), "
                         f"got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(model.input_shape) or len(x) == 0:
        raise InputError(f"{name} must have shape (N, {', '.join(map(str, model.input_shape))}) with N >= 1 to "
                         f"match the model's inputs, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return x.detach()


def check_logits(logits: object, count: int, num_classes: int) -> torch.Tensor:
    """``logits`` as a finite floating tensor ``(count, num_classes)``."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() \
            or tuple(logits.shape) != (count, num_classes):
        raise InputError(f"logits must be a floating-point tensor of shape ({count}, {num_classes}) (one row per "
                         f"input), got {getattr(logits, 'dtype', type(logits).__name__)} "
                         f"{tuple(getattr(logits, 'shape', ()))}")
    if not bool(torch.isfinite(logits).all()):
        raise InputError("logits contain NaN or infinite values")
    return logits.detach()
