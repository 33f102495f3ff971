"""The adaptive attacker's view of a preprocessed classifier: BPDA and EOT.

Papers: Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018
(BPDA, Backward Pass Differentiable Approximation); Athalye, Engstrom, Ilyas, Kwok, "Synthesizing
Robust Adversarial Examples", ICML 2018 (EOT, Expectation over Transformation).

:class:`AdaptiveView` computes exactly the defended model's logits (the values, the predictions and
so every success check are the real defended model's) but gives them adaptive gradients:

- BPDA: a step that is not ``differentiable`` runs forward as it is and backward as the identity
  (straight-through), so the gradient is the model's gradient at the preprocessed point.
- EOT: when a step is ``random``, the gradient is the mean over ``eot_samples`` random draws of the
  pipeline, the gradient of the expected logits. Draws are keyed on the input's content, from draw
  numbers (``EOT_FIRST_DRAW`` onwards) that the defended model never uses, so the attacker averages
  over the randomness instead of learning the defender's own draw; each new input gets new draws.
"""

from __future__ import annotations

import torch

from bastion.core.errors import InputError
from bastion.defenses.preprocess.base import Preprocessor, content_keys
from bastion.defenses.preprocess.classifier import PreprocessedClassifier

#: First draw number of the attacker's EOT samples; the defended model uses draws 0 .. draws - 1.
EOT_FIRST_DRAW = 1 << 20


class _StraightThrough(torch.autograd.Function):
    """Forward: ``output`` (the real step's result). Backward: the incoming gradient, to ``x``."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output.clone()

    @staticmethod
    def backward(ctx: object, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return gradient, None


def bpda(step: Preprocessor, x: torch.Tensor, *, keys: torch.Tensor | None = None, draw: int = 0) -> torch.Tensor:
    """``step(x)`` forward, identity backward: the BPDA surrogate of a non-differentiable step."""
    with torch.no_grad():
        output = step.transform(x, keys=keys, draw=draw)
    return _StraightThrough.apply(x, output)


class AdaptiveView:
    """A defended classifier with BPDA/EOT gradients; values and predictions are the defended model's.

    Args:
        defended: the preprocessed classifier under attack.
        eot_samples: random draws per gradient when a step is random (default 8, >= 1).
    """

    def __init__(self, defended: PreprocessedClassifier, *, eot_samples: int = 8) -> None:
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
            raise InputError(f"eot_samples must be an integer >= 1, got {eot_samples!r}")
        self.defended = defended
        self.eot_samples = eot_samples
        self.num_classes = defended.num_classes
        self.input_shape = defended.input_shape
        self.bounds = defended.bounds
        self.access = defended.access
        self.kind = f"{defended.kind}+adaptive"

    @property
    def gradients(self) -> str:
        """How gradients are taken: ``"bpda"``, ``"eot-K"``, ``"bpda+eot-K"`` or ``"autograd"``."""
        parts = []
        if not self.defended.differentiable:
            parts.append("bpda")
        if self.defended.random:
            parts.append(f"eot-{self.eot_samples}")
        return "+".join(parts) or "autograd"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The defended model's logits ``(N, C)``; their gradient w.r.t. ``x`` is the BPDA/EOT one."""
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.defended.logits(x)
        surrogate = self._surrogate(x)
        if not self.defended.random:
            return surrogate  # BPDA's forward is the real pipeline: the values are already exact
        with torch.no_grad():
            real = self.defended.logits(x)
        # Values of the defended model, gradient of the EOT mean (surrogate - surrogate is exactly 0).
        return real + (surrogate - surrogate.detach())

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels ``(N,)`` of the defended model: every success check is made on the real defense."""
        return self.defended.predict(x)

    def _surrogate(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logits over the EOT draws (one pass when deterministic), BPDA through rounding steps."""
        if not self.defended.random:
            return self.defended.classifier.logits(self._pipeline(x, None, 0))
        keys = content_keys(x)
        inputs = torch.cat([self._pipeline(x, keys, EOT_FIRST_DRAW + j) for j in range(self.eot_samples)])
        return self.defended.classifier.logits(inputs).reshape(self.eot_samples, len(x), -1).mean(dim=0)

    def _pipeline(self, x: torch.Tensor, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        for step in self.defended.steps:
            x = step.transform(x, keys=keys, draw=draw) if step.differentiable else bpda(step, x, keys=keys, draw=draw)
        return x
