"""``PreprocessedClassifier``: a classifier defended by preprocessing steps applied before the model.

It is a :class:`~bastion.models.base.Classifier` like any other, so the scan attacks it as it is:
its gradients are whatever autograd gives through the steps (zero through rounding, which is why a
plain attack is fooled). :meth:`PreprocessedClassifier.adaptive` returns the view an adaptive
attacker uses (BPDA and EOT, see :mod:`bastion.defenses.preprocess.adaptive`).

The prediction of a randomised defense is defined as follows: every random step draws its numbers
from a key hashed from the input's bytes (:func:`~bastion.defenses.preprocess.base.content_keys`),
its ``seed`` and a draw number, and the logits are the mean of the model's logits over ``draws``
such draws (``0 .. draws - 1``). The defended model is therefore a fixed function: the same input
always gets the same answer (reproducible, replayable evidence), and any change to an input, however
small, gets fresh noise. An adversarial example found against it fools it every time it is submitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.defenses.preprocess.base import Preprocessor, content_keys
from bastion.defenses.preprocess.spec import format_spec
from bastion.models.base import Classifier

if TYPE_CHECKING:
    from bastion.defenses.preprocess.adaptive import AdaptiveView


class PreprocessedClassifier:
    """``classifier`` behind ``steps``, applied in order to inputs ``(N, *input_shape)``.

    Args:
        classifier: the model to defend; its bounds are the steps' bounds (each step is fitted).
        steps: preprocessors, applied left to right; an empty list is the undefended model.
        draws: random draws averaged per prediction when a step is random (default 1); ignored
            for deterministic pipelines.

    ``num_classes``, ``input_shape``, ``bounds`` and ``access`` are the classifier's.
    """

    def __init__(self, classifier: Classifier, steps: Sequence[Preprocessor], *, draws: int = 1) -> None:
        bad = [step for step in steps if not isinstance(step, Preprocessor)]
        if bad:
            raise InputError(f"steps must be preprocessors (see bastion.defenses.preprocess), got {bad[0]!r}")
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise InputError(f"draws must be an integer >= 1, got {draws!r}")
        self.classifier = classifier
        self.steps = [step.fit(bounds=classifier.bounds) for step in steps]
        self.draws = draws
        self.num_classes: int = classifier.num_classes
        self.input_shape: tuple[int, ...] = tuple(classifier.input_shape)
        self.bounds: tuple[float, float] = classifier.bounds
        self.access: Access = classifier.access
        self.kind = f"{classifier.kind}+preprocess"
        self._check_pipeline()

    def _check_pipeline(self) -> None:
        """Run the steps once on a blank input, so a step that cannot take this input shape fails now."""
        blank = torch.full((1, *self.input_shape), self.bounds[0])
        with torch.no_grad():
            out = self.preprocess(blank)
        if out.shape != blank.shape:
            raise InputError(f"the preprocessing changed the input shape from {tuple(blank.shape[1:])} to "
                             f"{tuple(out.shape[1:])}; every step must keep it")

    @property
    def random(self) -> bool:
        """True when a step draws random numbers."""
        return any(step.random for step in self.steps)

    @property
    def differentiable(self) -> bool:
        """True when autograd through every step gives a useful gradient."""
        return all(step.differentiable for step in self.steps)

    @property
    def spec(self) -> str:
        """The pipeline as a spec string, e.g. ``"bits:4,median:3"``."""
        return format_spec(self.steps)

    def get_params(self) -> dict[str, Any]:
        """Every step's name, parameters and capabilities, and ``draws``, for the evidence record."""
        return {
            "steps": [{"name": step.name, "params": step.get_params(), "differentiable": step.differentiable,
                       "random": step.random} for step in self.steps],
            "draws": self.draws if self.random else 1,
        }

    def preprocess(self, x: torch.Tensor, *, keys: torch.Tensor | None = None, draw: int = 0) -> torch.Tensor:
        """Every step applied to ``x`` ``(N, *input_shape)`` with the given keys and draw number."""
        for step in self.steps:
            x = step.transform(x, keys=keys, draw=draw)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C)`` of the defended model (the mean over ``draws`` keyed draws if random)."""
        if not self.random:
            return self.classifier.logits(self.preprocess(x))
        keys = content_keys(x)
        inputs = torch.cat([self.preprocess(x, keys=keys, draw=draw) for draw in range(self.draws)])
        return self.classifier.logits(inputs).reshape(self.draws, len(x), -1).mean(dim=0)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels ``(N,)`` int64 of the defended model."""
        with torch.no_grad():
            return self.logits(x).argmax(dim=1)

    def adaptive(self, eot_samples: int = 8) -> AdaptiveView:
        """The same defended model with the gradients an adaptive attacker uses (BPDA and EOT).

        ``eot_samples`` (default 8): random draws averaged per gradient when a step is random.
        """
        from bastion.defenses.preprocess.adaptive import AdaptiveView

        return AdaptiveView(self, eot_samples=eot_samples)
