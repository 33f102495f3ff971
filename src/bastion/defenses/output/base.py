"""The post-processor contract: a scikit-learn style transform of a classifier's output probabilities.

A post-processor maps probabilities ``(N, C)`` (rows summing to 1) to hardened scores ``(N, C)``
that reveal less about the model: fewer classes (top-k), fewer digits (rounding), only the label
(label-only) or noisy values (noise). Parameters go in ``__init__``; :meth:`PostProcessor.get_params`
is what the evidence records. Nothing is learned, so there is no ``fit``.

Every post-processor keeps the top-1 class: the hardened row's largest entry is the input row's
(ties that rounding creates are broken by
:class:`~bastion.defenses.output.classifier.PostprocessedClassifier` toward the model's label), so
the defended model predicts exactly what the model predicts. What the defense costs is in the
scores: see :func:`~bastion.defenses.output.cost.accuracy_cost`.

Class attributes:
    ``label_only``: the output carries only the top label (the defended model's ``access`` becomes
    ``"labels"``). ``random``: the step draws random numbers, keyed by each input's content (see
    :func:`~bastion.defenses.preprocess.base.content_keys`), so the same query always gets the same answer.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.defenses.output.classifier import PostprocessedClassifier
    from bastion.models.base import Classifier

#: Probabilities are clamped here before a log, so a zeroed class gets a finite score.
MIN_PROBABILITY = 1e-12


class PostProcessor(ABC):
    """Base class of the output defenses; subclasses set ``name`` and implement :meth:`_apply`."""

    name: ClassVar[str]
    label_only: ClassVar[bool] = False
    random: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, for the evidence record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def transform(self, probabilities: torch.Tensor, *, keys: torch.Tensor | None = None) -> torch.Tensor:
        """Hardened scores ``(N, C)`` for probabilities ``(N, C)``; the argmax of every row is kept.

        Args:
            probabilities: non-negative rows summing to 1 (a model's softmax).
            keys: ``(N,)`` int64 per-sample keys for random steps (the defended classifier passes
                content keys); deterministic steps ignore them. Required by random steps.
        """
        if not isinstance(probabilities, torch.Tensor) or probabilities.ndim != 2 \
                or not probabilities.is_floating_point() or probabilities.shape[1] < 2:
            raise InputError(f"{self.name}: expected probabilities of shape (N, C) with C >= 2, got "
                             f"{getattr(probabilities, 'shape', type(probabilities).__name__)}")
        if self.random and (keys is None or keys.shape != (len(probabilities),)):
            raise InputError(f"{self.name} is random: pass keys=(N,) int64 per-sample keys")
        return self._apply(probabilities, keys)

    __call__ = transform

    @abstractmethod
    def _apply(self, probabilities: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """The transform itself, on checked input."""

    def wrap(self, classifier: Classifier) -> PostprocessedClassifier:
        """``classifier`` behind this step: a :class:`~bastion.defenses.output.classifier.PostprocessedClassifier`."""
        from bastion.defenses.output.classifier import PostprocessedClassifier

        return PostprocessedClassifier(classifier, [self])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def keep_top_class(original: torch.Tensor, hardened: torch.Tensor) -> torch.Tensor:
    """``hardened`` ``(N, C)`` with, in rows whose argmax moved, the entries of the old and new top class swapped.

    The swap keeps the row's values (and its sum) and makes ``original``'s top class the largest again.
    """
    top = original.argmax(dim=1, keepdim=True)
    moved = hardened.argmax(dim=1, keepdim=True)
    out = hardened.clone()
    out.scatter_(1, top, hardened.gather(1, moved))
    out.scatter_(1, moved, hardened.gather(1, top))
    return out


def check_int(value: object, name: str, low: int) -> int:
    """``value`` as an int ``>= low``; :class:`InputError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_scale(value: object, name: str) -> float:
    """``value`` as a finite float ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
