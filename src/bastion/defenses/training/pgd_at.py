"""PGD adversarial training.

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018.
Idea: minimise the worst-case loss in the eps-ball, approximated by training on PGD examples found
against the current weights (every point, every step, from a random start).
Norms: linf, l2. Defaults: 7 steps of ``2.5 * eps / steps`` (bastion's PGD step rule), random start.
Madry et al. use 7 steps of ``eps / 4`` on CIFAR-10 (pass ``rel_step_size=0.25`` to match).
Cost: ``steps + 1`` forward and backward passes per sample, against 1 for plain training.
Shapes: x ``(B, *input_shape)`` in the model's bounds, y ``(B,)`` int64.

Example:
    >>> objective = PGDAdversarial(ThreatModel(norm="linf", eps=0.1), steps=7)
    >>> record = fit(classifier, x, y, objective, epochs=20, schedule="piecewise")
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.core.threat import ThreatModel
from bastion.defenses.training.adversarial import check_bounds, check_steps, check_training_threat, pgd_examples
from bastion.models.torch_adapter import TorchClassifier


class PGDAdversarial:
    """Cross-entropy on PGD examples (the clean inputs themselves are not trained on).

    Args:
        threat: the budget to train against (untargeted, ``eps > 0``, bounds = the model's bounds).
        steps: PGD steps per batch, default 7.
        rel_step_size: step size as a fraction of eps, default ``2.5 / steps``.
        random_start: start from a uniform point of the ball (default), as Madry et al.
    """

    name = "pgd"

    def __init__(
        self, threat: ThreatModel, *, steps: int = 7, rel_step_size: float | None = None, random_start: bool = True
    ) -> None:
        self.threat = check_training_threat(threat)
        self.steps = steps
        self.rel_step_size = check_steps(steps, rel_step_size)
        self.random_start = bool(random_start)

    def loss(
        self,
        classifier: TorchClassifier,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: float,
        seed: int,
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy of the PGD examples of ``x`` ``(B, *input_shape)``, found in eval mode."""
        check_bounds(classifier, self.threat)
        x_adv = pgd_examples(classifier, module, x, y, self.threat, steps=self.steps,
                             rel_step_size=self.rel_step_size, random_start=self.random_start, seed=seed, keys=keys)
        module.train()
        return F.cross_entropy(module(classifier.normalise(x_adv)), y)

    def params(self) -> dict[str, Any]:
        return {"threat": self.threat.model_dump(mode="json"), "steps": self.steps,
                "rel_step_size": self.rel_step_size, "random_start": self.random_start}
