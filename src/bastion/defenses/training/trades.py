"""TRADES: trade natural accuracy against robustness with a KL term.

Paper: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between
Robustness and Accuracy", ICML 2019.
Loss: ``CE(f(x), y) + beta * KL(p(x) || p(x'))`` where ``x'`` maximises the KL term in the eps-ball.
Inner maximisation: PGD on the KL from ``x + 0.001 * N(0, I)`` (the KL and its gradient are zero at
``x`` itself, hence the small random start), signed steps for linf, normalised ones for l2.
Defaults: ``beta = 6`` (the paper's choice for CIFAR-10), 7 steps of ``2.5 * eps / steps``.
Cost: ``steps + 2`` forward and backward passes per sample.
Shapes: x ``(B, *input_shape)`` in the model's bounds, y ``(B,)`` int64.

Example:
    >>> record = fit(classifier, x, y, TRADES(ThreatModel(eps=0.1), beta=6.0), epochs=20)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.attacks.norms import project, steepest_direction
from bastion.core.errors import InputError
from bastion.core.seeding import keyed_normal
from bastion.core.threat import ThreatModel
from bastion.defenses.training.adversarial import check_bounds, check_steps, check_training_threat, frozen
from bastion.models.torch_adapter import TorchClassifier

#: Standard deviation of the Gaussian start of the inner maximisation (the authors' code uses 0.001).
START_SCALE = 0.001


def kl_from_clean(clean_log_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(N,)`` KL divergence ``KL(p_clean || softmax(logits))``; ``clean_log_probs`` is ``(N, C)``."""
    return (clean_log_probs.exp() * (clean_log_probs - F.log_softmax(logits, dim=1))).sum(dim=1)


class TRADES:
    """The TRADES objective.

    Args:
        threat: the budget of the inner maximisation (untargeted, ``eps > 0``).
        beta: weight of the robustness (KL) term, default 6; larger trades more clean accuracy for robustness.
        steps: inner PGD steps, default 7. rel_step_size: step as a fraction of eps, default ``2.5 / steps``.
    """

    name = "trades"

    def __init__(
        self, threat: ThreatModel, *, beta: float = 6.0, steps: int = 7, rel_step_size: float | None = None
    ) -> None:
        self.threat = check_training_threat(threat)
        if not (math.isfinite(beta) and beta >= 0):
            raise InputError(f"beta must be a finite number >= 0, got {beta}")
        self.beta = float(beta)
        self.steps = steps
        self.rel_step_size = check_steps(steps, rel_step_size)

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
        """Mean TRADES loss of a batch ``x`` ``(B, *input_shape)``; the inner maximisation runs in eval mode."""
        check_bounds(classifier, self.threat)
        x_adv = self.maximise_kl(classifier, module, x, seed=seed, keys=keys)
        module.train()
        clean_logits = module(classifier.normalise(x))
        adversarial_logits = module(classifier.normalise(x_adv))
        # Gradients flow through both terms of the KL, as in the authors' implementation.
        robust = kl_from_clean(F.log_softmax(clean_logits, dim=1), adversarial_logits).mean()
        return F.cross_entropy(clean_logits, y) + self.beta * robust

    def maximise_kl(
        self, classifier: TorchClassifier, module: nn.Module, x: torch.Tensor, *, seed: int, keys: torch.Tensor
    ) -> torch.Tensor:
        """Inputs ``(B, *input_shape)`` in the ball around ``x`` of high KL from the clean prediction."""
        threat = self.threat
        with frozen(module):
            with torch.no_grad():
                clean_log_probs = F.log_softmax(classifier.logits(x), dim=1)
            noise = keyed_normal(keys, seed, 0, tuple(x.shape[1:]), dtype=x.dtype).to(x.device)
            x_adv = project(x + START_SCALE * noise, x, threat.norm, threat.eps, threat.bounds)
            step_size = self.rel_step_size * threat.eps
            for _ in range(self.steps):
                _, _, gradient = logits_loss_and_gradient(
                    classifier, x_adv, lambda logits: kl_from_clean(clean_log_probs, logits)
                )
                x_adv = project(x_adv + step_size * steepest_direction(gradient, threat.norm), x, threat.norm,
                                threat.eps, threat.bounds)
        return x_adv.detach()

    def params(self) -> dict[str, Any]:
        return {"threat": self.threat.model_dump(mode="json"), "beta": self.beta, "steps": self.steps,
                "rel_step_size": self.rel_step_size}
