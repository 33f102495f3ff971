"""FGSM — Fast Gradient Sign Method.

Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
Norms: linf (sign of the gradient) and l2 (normalised gradient, the "fast gradient method").
Access: white-box. Cost: one forward and backward pass per sample.
Defaults: a single step of size eps; no random start.
Shapes: x ``(N, *input_shape)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> result = FGSM()(model, x, y, ThreatModel(norm="linf", eps=0.1))
"""

from __future__ import annotations

import torch

from bastion.attacks import losses
from bastion.attacks.base import ATTACKS, EvasionAttack
from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.attacks.norms import distance, project, steepest_direction
from bastion.core.records import AttackResult
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier


@ATTACKS.register("fgsm")
class FGSM(EvasionAttack):
    name = "fgsm"
    access = "white"

    def perturb(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        seed: int,
        keys: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> AttackResult:
        if targets is None:
            _, _, gradient = logits_loss_and_gradient(model, x, lambda z: losses.cross_entropy(z, y))
        else:
            _, _, gradient = logits_loss_and_gradient(model, x, lambda z: -losses.cross_entropy(z, targets))
        x_adv = project(x + threat.eps * steepest_direction(gradient, threat.norm), x, threat.norm,
                        threat.eps, threat.bounds)
        ones = torch.ones(len(x), dtype=torch.int64)
        return AttackResult(x_adv, torch.zeros(len(x), dtype=torch.bool), distance(x_adv - x, threat.norm), ones)
