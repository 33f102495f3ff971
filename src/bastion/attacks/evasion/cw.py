"""CW-L2 — the Carlini-Wagner L2 attack (minimal-norm, optimisation based).

Paper: Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
Norms: l2 only. Access: white-box.
Method: minimise ``||x' - x||_2^2 + c * max(Z_y - max_{i != y} Z_i, -confidence)`` (targeted:
``max(max_{i != t} Z_i - Z_t, -confidence)``) over ``w`` with Adam, where
``x' = low + (high - low) * (tanh(w) + 1) / 2`` keeps ``x'`` inside the threat model's bounds.
A per-sample binary search over ``c`` (times 10 until a first success, then bisection) follows
each round of ``steps`` Adam steps; every round restarts from ``x``.
Defaults: ``binary_search_steps=5``, ``steps=100``, ``initial_const=1e-2``, ``confidence=0``,
``lr=0.01``.
Result: the smallest-l2 successful example found per sample (the engine then projects it onto the
eps-ball, so a sample whose smallest example is larger than eps fails). Unlike the eps-bounded
attacks there is no early stop: a broken point keeps shrinking its perturbation.
Shapes: x ``(N, *input_shape)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> result = CarliniWagnerL2(steps=100)(model, x, y, ThreatModel(norm="l2", eps=0.5))
"""

from __future__ import annotations

import math

import torch

from bastion.attacks import losses
from bastion.attacks.base import ATTACKS, EvasionAttack, goal_reached
from bastion.core.errors import InputError
from bastion.core.records import AttackResult
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier

#: Constants above this count as "no successful constant seen yet" (the paper's 1e10).
_UNBOUNDED = 1e10
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


def to_tanh_space(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``w`` with ``from_tanh_space(w) ~= x`` (scaled by ``1 - 1e-6`` to keep ``atanh`` finite)."""
    low, high = bounds
    unit = (x - low) / (high - low) * 2 - 1
    return torch.atanh(unit * (1 - 1e-6))


def from_tanh_space(w: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Map ``w`` (any real values) into the box ``bounds``."""
    low, high = bounds
    return low + (high - low) * (torch.tanh(w) + 1) / 2


def adversarial_margin(
    logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """``(N,)``: best wrong logit minus true logit (targeted: target logit minus best other)."""
    if targets is None:
        return losses.margin(logits, y)
    return losses.targeted_margin(logits, targets)


def update_constants(
    const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, won: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One binary-search step over ``(N,)`` constants; returns ``(const, lower, upper)``."""
    upper = torch.where(won, torch.minimum(upper, const), upper)
    lower = torch.where(won, lower, torch.maximum(lower, const))
    bounded = upper < _UNBOUNDED
    const = torch.where(bounded, (lower + upper) / 2, torch.where(won, const, const * 10))
    return const, lower, upper


@ATTACKS.register("cw-l2")
class CarliniWagnerL2(EvasionAttack):
    name = "cw-l2"
    access = "white"
    norms = ("l2",)

    def __init__(
        self,
        binary_search_steps: int = 5,
        steps: int = 100,
        initial_const: float = 1e-2,
        confidence: float = 0.0,
        lr: float = 0.01,
    ) -> None:
        if binary_search_steps < 1 or steps < 1:
            raise InputError("binary_search_steps and steps must be >= 1")
        if initial_const <= 0 or lr <= 0 or confidence < 0:
            raise InputError("initial_const and lr must be > 0 and confidence >= 0")
        self.binary_search_steps = binary_search_steps
        self.steps = steps
        self.initial_const = initial_const
        self.confidence = confidence
        self.lr = lr

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
        n = len(x)
        best, best_norm = x.clone(), x.new_full((n,), math.inf)
        const = x.new_full((n,), self.initial_const)
        lower, upper = x.new_zeros(n), x.new_full((n,), _UNBOUNDED * 10)
        queries = torch.zeros(n, dtype=torch.int64)
        w_start = to_tanh_space(x, threat.bounds)
        for _ in range(self.binary_search_steps):
            won = self._optimise(model, x, y, targets, w_start, const, threat, best, best_norm)
            queries += self.steps
            const, lower, upper = update_constants(const, lower, upper, won)
        success = torch.isfinite(best_norm)
        return AttackResult(best, success.cpu(), torch.where(success, best_norm, 0.0), queries)

    def _optimise(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        w_start: torch.Tensor,
        const: torch.Tensor,
        threat: ThreatModel,
        best: torch.Tensor,
        best_norm: torch.Tensor,
    ) -> torch.Tensor:
        """``steps`` Adam steps from ``x`` at constants ``const`` ``(N,)``.

        Updates ``best`` / ``best_norm`` in place with smaller successful examples; returns ``(N,)``
        whether this round found any success (the binary search's signal).
        """
        w = w_start.clone()
        moment, second = torch.zeros_like(w), torch.zeros_like(w)
        won = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for step in range(1, self.steps + 1):
            x_new, sq_norm, logits, grad = self._loss_gradient(
                model, w, x, y, targets, const, threat
            )
            margin = adversarial_margin(logits, y, targets)
            hit = goal_reached(logits.argmax(1), y, targets) & (margin >= self.confidence)
            size = sq_norm.sqrt()
            better = hit & (size < best_norm)
            best[better] = x_new[better]
            best_norm[better] = size[better]
            won |= hit
            w = self._adam(w, grad, moment, second, step)
        return won

    def _loss_gradient(
        self,
        model: Classifier,
        w: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        const: torch.Tensor,
        threat: ThreatModel,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward and backward: ``(x' , ||x' - x||^2 (N,), logits (N, C), d loss / d w)``."""
        with torch.enable_grad():
            w = w.detach().requires_grad_(True)
            x_new = from_tanh_space(w, threat.bounds)
            sq_norm = (x_new - x).flatten(1).pow(2).sum(1)
            logits = model.logits(x_new)
            hinge = (-adversarial_margin(logits, y, targets)).clamp_min(-self.confidence)
            (grad,) = torch.autograd.grad((sq_norm + const * hinge).sum(), w)
        return x_new.detach(), sq_norm.detach(), logits.detach(), grad

    def _adam(
        self,
        w: torch.Tensor,
        grad: torch.Tensor,
        moment: torch.Tensor,
        second: torch.Tensor,
        step: int,
    ) -> torch.Tensor:
        """One Adam step (updates the moment estimates in place); element-wise, so per sample."""
        beta1, beta2 = _ADAM_BETAS
        moment.mul_(beta1).add_(grad, alpha=1 - beta1)
        second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (second / (1 - beta2**step)).sqrt().add_(_ADAM_EPS)
        return w - self.lr * (moment / (1 - beta1**step)) / denom
