"""``PostprocessedClassifier``: a classifier whose answers pass through output post-processors.

It is a :class:`~bastion.models.base.Classifier` like any other, so extraction attacks (and the
scan) see the hardened answers. Per query it takes the model's probabilities (``softmax`` of its
logits, or the one-hot label of a label-only model), applies the steps in order and returns:

- ``logits``: the log of the hardened probabilities (clamped at ``1e-12``), so ``softmax(logits)``
  gives them back (renormalised where rounding left a row summing to slightly more or less than 1);
  for a label-only result (a :class:`~bastion.defenses.output.label_only.LabelOnly` step, or a
  label-only model), the one-hot top label, as the protocol asks.
- ``predict``: the model's own labels, unchanged. Every step keeps the top class; where rounding
  ties it with another class, its score is raised by one floating-point step so the argmax of the
  logits is the model's label too.
- ``probabilities``: the hardened probabilities themselves (rounded values stay exactly rounded).

Access: ``"labels"`` when a step is label-only or the model is, else ``"scores"`` even for a
white-box model: the outputs are computed without gradients (rounding and top-k have none worth
following), so an attacker gets scores, never gradients through the post-processing.
Random steps are keyed by each input's content, so repeated queries get the same answer.

Example:
    >>> hardened = PostprocessedClassifier(model, [TopK(k=3), Rounding(decimals=2)])
    >>> hardened.access
    'scores'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.defenses.output.base import MIN_PROBABILITY, PostProcessor
from bastion.defenses.preprocess.base import content_keys
from bastion.models.base import Classifier


class PostprocessedClassifier:
    """``classifier`` with ``steps`` applied, in order, to its output probabilities ``(N, C)``.

    Args:
        classifier: the model to harden (any access level).
        steps: post-processors; an empty list gives the model's probabilities as log-probabilities.

    ``num_classes``, ``input_shape`` and ``bounds`` are the classifier's; ``access`` is at most ``"scores"``.
    """

    def __init__(self, classifier: Classifier, steps: Sequence[PostProcessor]) -> None:
        if not isinstance(classifier, Classifier):
            raise InputError(f"classifier must be a bastion Classifier, got {type(classifier).__name__}")
        bad = [step for step in steps if not isinstance(step, PostProcessor)]
        if bad:
            raise InputError(f"steps must be output post-processors (see bastion.defenses.output), got {bad[0]!r}")
        self.classifier = classifier
        self.steps = list(steps)
        self.num_classes: int = int(classifier.num_classes)
        self.input_shape: tuple[int, ...] = tuple(classifier.input_shape)
        self.bounds: tuple[float, float] = classifier.bounds
        label_only = classifier.access == "labels" or any(step.label_only for step in self.steps)
        self.access: Access = "labels" if label_only else "scores"
        self.kind = f"{classifier.kind}+postprocess"

    @property
    def device(self) -> torch.device | None:
        """The wrapped model's device, when it has one."""
        device = getattr(self.classifier, "device", None)
        return device if isinstance(device, torch.device) else None

    def get_params(self) -> dict[str, Any]:
        """Every step's name and parameters, and the resulting access, for the evidence record."""
        return {"steps": [{"name": step.name, "params": step.get_params()} for step in self.steps],
                "access": self.access}

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hardened probabilities ``(N, C)`` and the model's labels ``(N,)``."""
        with torch.no_grad():
            scores = self.classifier.logits(x).detach()
            labels = scores.argmax(dim=1)
            if self.classifier.access == "labels":
                probabilities = F.one_hot(labels, self.num_classes).float()
            else:
                probabilities = torch.softmax(scores.float(), dim=1)
            keys = content_keys(x) if any(step.random for step in self.steps) else None
            for step in self.steps:
                probabilities = step.transform(probabilities, keys=keys)
        return probabilities, labels

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Hardened probabilities ``(N, C)`` for inputs ``(N, *input_shape)`` (one-hot when label-only)."""
        probabilities, labels = self._outputs(x)
        if self.access == "labels":
            return F.one_hot(labels, self.num_classes).to(probabilities.dtype)
        return probabilities

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, C)`` without gradients: log hardened probabilities, or one-hot labels when label-only."""
        probabilities, labels = self._outputs(x)
        if self.access == "labels":
            return F.one_hot(labels, self.num_classes).to(probabilities.dtype)
        scores = probabilities.clamp_min(MIN_PROBABILITY).log()
        top = scores.max(dim=1).values
        tied = scores.argmax(dim=1) != labels
        raised = torch.nextafter(top, torch.full_like(top, float("inf")))
        rows = torch.arange(len(scores), device=scores.device)
        scores[rows[tied], labels[tied]] = raised[tied]
        return scores

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels ``(N,)`` int64: the model's own."""
        return self._outputs(x)[1]
