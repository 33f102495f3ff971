"""Fast adversarial training: FGSM from a random start.

Paper: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020.
Idea: one gradient step of size ``1.25 * eps`` from a uniform random point of the eps-ball,
projected back onto the ball and the bounds, costs two passes per sample instead of PGD's eight,
and trains models nearly as robust as PGD-AT.
Caveat, catastrophic overfitting: with too large a step or too many epochs, robustness to PGD can
collapse to zero within an epoch while robustness to FGSM stays high. Train with validation and
``EarlyStop`` (the loop keeps the epoch with the best PGD accuracy) and, as the paper does, with
the ``"one-cycle"`` schedule.
Norms: linf (uniform start in the box, signed step), l2 (uniform start in the ball, normalised step).
Shapes: x ``(B, *input_shape)`` in the model's bounds, y ``(B,)`` int64.

Example:
    >>> fit(classifier, x, y, FastAdversarial(ThreatModel(eps=0.1)), epochs=15, schedule="one-cycle",
    ...     validation=(x_val, y_val), early_stop=EarlyStop(ThreatModel(eps=0.1)))
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks import losses
from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.attacks.norms import project, random_in_ball, steepest_direction
from bastion.core.errors import InputError
from bastion.core.threat import ThreatModel
from bastion.defenses.training.adversarial import check_bounds, check_training_threat, frozen
from bastion.models.torch_adapter import TorchClassifier


class FastAdversarial:
    """Cross-entropy on FGSM-with-random-start examples.

    Args:
        threat: the budget to train against (untargeted, ``eps > 0``).
        rel_step_size: the FGSM step as a fraction of eps, default 1.25 (the paper's ``alpha``); the
            paper reports catastrophic overfitting from about 2.0 on.
    """

    name = "fast"

    def __init__(self, threat: ThreatModel, *, rel_step_size: float = 1.25) -> None:
        self.threat = check_training_threat(threat)
        if not (math.isfinite(rel_step_size) and rel_step_size > 0):
            raise InputError(f"rel_step_size must be a finite number > 0, got {rel_step_size}")
        self.rel_step_size = float(rel_step_size)

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
        """Mean cross-entropy of the examples of ``x`` ``(B, *input_shape)``; the FGSM step runs in eval mode."""
        check_bounds(classifier, self.threat)
        x_adv = self.examples(classifier, module, x, y, seed=seed, keys=keys)
        module.train()
        return F.cross_entropy(module(classifier.normalise(x_adv)), y)

    def examples(
        self,
        classifier: TorchClassifier,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int,
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """FGSM examples ``(B, *input_shape)`` from a random start, detached, inside the budget and bounds."""
        threat = self.threat
        start = x + random_in_ball(keys, seed, 0, x, threat.norm, threat.eps)
        start = start.clamp(*threat.bounds)
        with frozen(module):
            _, _, gradient = logits_loss_and_gradient(classifier, start, lambda logits: losses.cross_entropy(logits, y))
        step = self.rel_step_size * threat.eps * steepest_direction(gradient, threat.norm)
        return project(start + step, x, threat.norm, threat.eps, threat.bounds).detach()

    def params(self) -> dict[str, Any]:
        return {"threat": self.threat.model_dump(mode="json"), "rel_step_size": self.rel_step_size}
