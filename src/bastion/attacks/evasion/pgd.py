"""PGD — Projected Gradient Descent (on the cross-entropy loss).

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018.
Norms: linf (signed steps), l2 (normalised steps). Access: white-box.
Defaults: 40 steps, step size ``2.5 * eps / steps``, random start, 1 restart, early stop.
Early stop: a sample leaves the batch as soon as it is misclassified, so no steps are spent on
points already broken (set ``early_stop=False`` to run every step on every point, as most libraries do).
Restarts start from a new random point and run only on the samples still unbroken.
Shapes: x ``(N, *input_shape)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> result = PGD(steps=40, restarts=2)(model, x, y, ThreatModel(norm="l2", eps=1.0), seed=7)
"""

from __future__ import annotations

import torch

from bastion.attacks import losses
from bastion.attacks.base import ATTACKS, EvasionAttack, goal_reached
from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.attacks.norms import distance, project, random_in_ball, steepest_direction
from bastion.core.errors import InputError
from bastion.core.records import AttackResult
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier


@ATTACKS.register("pgd")
class PGD(EvasionAttack):
    name = "pgd"
    access = "white"

    def __init__(
        self,
        steps: int = 40,
        rel_step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = True,
    ) -> None:
        if steps < 1 or restarts < 1:
            raise InputError("steps and restarts must be >= 1")
        self.steps = steps
        self.rel_step_size = 2.5 / steps if rel_step_size is None else rel_step_size
        self.random_start = random_start
        self.restarts = restarts
        self.early_stop = early_stop

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
        best = x.clone()
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.int64)
        for restart in range(self.restarts):
            todo = (~success).nonzero().squeeze(1)
            if not len(todo):
                break
            last = restart == self.restarts - 1
            x_adv, won = self._descend(model, x[todo], y[todo], None if targets is None else targets[todo],
                                       threat, seed, keys[todo], restart, queries, todo, check_final=not last)
            best[todo] = x_adv
            success[todo] = won
        return AttackResult(best, success.cpu(), distance(best - x, threat.norm), queries)

    def _descend(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        threat: ThreatModel,
        seed: int,
        keys: torch.Tensor,
        restart: int,
        queries: torch.Tensor,
        index: torch.Tensor,
        *,
        check_final: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of ``steps`` steps from a (random) start; returns the final points and who succeeded.

        The working tensors hold only the samples still active, so a step costs no gather or scatter
        unless some samples broke in it. The final points are only checked when ``check_final`` (the
        engine verifies every result anyway; restarts need to know whom to restart).
        """
        step_size = self.rel_step_size * threat.eps
        start = x
        if self.random_start:
            start = (x + random_in_ball(keys, seed, restart, x, threat.norm, threat.eps)).clamp(*threat.bounds)
        final = start.clone()
        won = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.arange(len(x), device=x.device)
        # Untargeted: ascend the CE of the true class; targeted: descend the CE of the target.
        goal = y if targets is None else targets
        sign = 1.0 if targets is None else -1.0
        xa, x0, ya, ga = start, x, y, goal
        for _ in range(self.steps):
            logits, _, gradient = logits_loss_and_gradient(
                model, xa, lambda z, g=ga: sign * losses.cross_entropy(z, g)
            )
            queries[index[active].cpu()] += 1
            if self.early_stop:
                reached = goal_reached(logits.argmax(1), ya, None if targets is None else ga)
                if bool(reached.any()):
                    won[active[reached]] = True
                    final[active[reached]] = xa[reached]
                    keep = ~reached
                    active, xa, x0, ya, ga, gradient = (t[keep] for t in (active, xa, x0, ya, ga, gradient))
                    if not len(active):
                        break
            xa = project(xa + step_size * steepest_direction(gradient, threat.norm), x0, threat.norm,
                         threat.eps, threat.bounds)
        if len(active):
            final[active] = xa
            if check_final:
                with torch.no_grad():
                    reached = goal_reached(model.predict(xa), ya, None if targets is None else ga)
                queries[index[active].cpu()] += 1
                won[active] = reached
        return final, won
