"""APGD — Auto-PGD: step-size-free PGD with momentum (APGD-CE, APGD-DLR, APGD-T).

Paper: Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (Algorithm 1, the DLR and targeted DLR losses).
Norms: linf (signed steps), l2 (normalised steps). Access: white-box.
Defaults: 100 iterations, momentum ``alpha=0.75``, ``rho=0.75``, initial step ``2 * eps``, random
start, 1 restart. The step is halved at iterations ``ceil(p_j * iterations)``, ``p_0=0, p_1=0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, where fewer than ``rho`` of the steps since the
last checkpoint raised the loss, or neither step nor best loss changed since then; each halving
restarts from the best point. ``apgd-ce`` ascends the cross-entropy (``loss="dlr"``: DLR).
``apgd-t`` (AutoAttack's APGD-T) ascends the targeted DLR loss for each of the
``n_target_classes`` (9) highest non-true clean logits in turn, each only on the points still
unbroken; success stays "misclassified". Under a targeted threat both use the given targets.
Early stop: a sample leaves the batch (its state is compacted away) as soon as its current point
reaches the goal. Restarts run only on the samples still unbroken.
Shapes: x ``(N, *input_shape)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> result = APGD(iterations=100)(model, x, y, ThreatModel(norm="linf", eps=8 / 255), seed=0)
    >>> result = APGDTargeted(n_target_classes=9)(model, x, y, ThreatModel(norm="l2", eps=0.5))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch

from bastion.attacks import losses
from bastion.attacks.base import ATTACKS, EvasionAttack, goal_reached
from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.attacks.norms import distance, per_sample, project, random_in_ball, steepest_direction
from bastion.core.errors import InputError
from bastion.core.records import AttackResult
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier

#: ``(logits (A, C), labels (A,), goals (A,)) -> (A,)`` loss to increase.
GoalLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: dict[tuple[str, bool], GoalLoss] = {  # (name, targeted) -> loss
    ("ce", False): lambda z, y, g: losses.cross_entropy(z, y),
    ("ce", True): lambda z, y, g: -losses.cross_entropy(z, g),
    ("dlr", False): lambda z, y, g: losses.dlr(z, y),
    ("dlr", True): losses.targeted_dlr,
}


def checkpoints(iterations: int) -> list[int]:
    """Iterations ``w_j = ceil(p_j * iterations)``, ``j >= 1``, where the step may be halved."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * iterations, 6)) for q in p[1:]} - {0})



@dataclass
class _State:
    """Per-sample state of the A active samples; every field has first dimension A."""

    index: torch.Tensor  # (A,) positions in the attacked batch
    x: torch.Tensor  # (A, *shape) clean inputs
    y: torch.Tensor  # (A,) labels
    goal: torch.Tensor  # (A,) targets (the labels for untargeted losses)
    x_cur: torch.Tensor  # x^(k)
    x_prev: torch.Tensor  # x^(k-1)
    x_max: torch.Tensor  # best point so far
    grad_max: torch.Tensor  # loss gradient at x_max
    f_prev: torch.Tensor  # (A,) f(x^(k-1))
    f_max: torch.Tensor  # (A,) best loss so far
    f_max_ckpt: torch.Tensor  # (A,) best loss at the last checkpoint
    eta: torch.Tensor  # (A,) step size
    increases: torch.Tensor  # (A,) int64, loss increases since the last checkpoint
    halved_last: torch.Tensor  # (A,) bool, step halved at the last checkpoint

    def keep(self, mask: torch.Tensor) -> _State:
        return _State(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


@dataclass
class _Job:
    """One call: what its runs share, and their results ``best`` ``(N, *shape)``, ``success``
    ``(N,)`` bool and ``queries`` ``(N,)`` int64 (CPU)."""

    model: Classifier
    threat: ThreatModel
    seed: int
    best: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor


class _APGDBase(EvasionAttack):
    """Algorithm 1 of the paper with per-sample, vectorised state and early stopping."""

    access = "white"

    def __init__(self, iterations: int, restarts: int, momentum: float, rho: float,
                 rel_step_size: float, random_start: bool) -> None:
        if iterations < 1 or restarts < 1 or rel_step_size <= 0:
            raise InputError("iterations and restarts must be >= 1 and rel_step_size > 0")
        if not (0 <= momentum <= 1 and 0 <= rho <= 1):
            raise InputError("momentum and rho must lie in [0, 1]")
        self.iterations, self.restarts = iterations, restarts
        self.momentum, self.rho = momentum, rho
        self.rel_step_size, self.random_start = rel_step_size, random_start

    def _min_classes(self, threat: ThreatModel) -> int:
        return 4  # the targeted DLR loss reads the 4th-largest logit

    def supports(self, model: Classifier, threat: ThreatModel) -> str | None:
        if model.num_classes < self._min_classes(threat):
            return f"{self.name} with this loss needs at least {self._min_classes(threat)} classes"
        return super().supports(model, threat)

    def _attack(self, job: _Job, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor,
                goals: torch.Tensor, targeted: bool, loss: GoalLoss) -> AttackResult:
        """Per column of ``goals`` ``(N, G)``: ``restarts`` runs on the samples still unbroken."""
        for column in range(goals.shape[1]):
            for restart in range(self.restarts):
                todo = (~job.success).nonzero().squeeze(1)
                if len(todo):
                    stream = column * self.restarts + restart
                    state = self._start(job, todo, x, y, goals[:, column], keys, stream)
                    self._run(job, state, targeted, loss)
        return AttackResult(job.best, job.success.cpu(), distance(job.best - x, job.threat.norm),
                            job.queries)

    def _start(self, job: _Job, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
               goal: torch.Tensor, keys: torch.Tensor, stream: int) -> _State:
        """Fresh state for the samples ``index``, at a keyed random point of the ball."""
        x, threat, n = x[index], job.threat, len(index)
        start = x
        if self.random_start:
            noise = random_in_ball(keys[index], job.seed, stream, x, threat.norm, threat.eps)
            start = project(x + noise, x, threat.norm, threat.eps, threat.bounds)
        inf, zero = x.new_full((n,), math.inf), torch.zeros(n, dtype=torch.int64, device=x.device)
        return _State(index, x, y[index], goal[index], start, start, start, torch.zeros_like(x),
                      inf, -inf, -inf, x.new_full((n,), self.rel_step_size * threat.eps), zero,
                      zero.bool())

    def _run(self, job: _Job, s: _State, targeted: bool, loss: GoalLoss) -> None:
        """One run of ``iterations`` steps; writes broken (else best) points into ``job``."""
        marks, last = set(checkpoints(self.iterations)), 0
        for t in range(self.iterations + 1):
            logits, f, grad = logits_loss_and_gradient(
                job.model, s.x_cur, lambda z, st=s: loss(z, st.y, st.goal))
            job.queries[s.index.cpu()] += 1
            hit = goal_reached(logits.argmax(1), s.y, s.goal if targeted else None)
            if bool(hit.any()):
                job.best[s.index[hit]] = s.x_cur[hit]
                job.success[s.index[hit]] = True
                s, f, grad = s.keep(~hit), f[~hit], grad[~hit]
                if not len(s.index):
                    return
            self._record(s, f, grad, first=t == 0)
            if t == self.iterations:
                break
            if t in marks:
                grad, last = self._checkpoint(s, grad, t - last), t
            self._step(s, grad, job.threat, 1.0 if t == 0 else self.momentum)
        job.best[s.index] = s.x_max

    @staticmethod
    def _record(s: _State, f: torch.Tensor, grad: torch.Tensor, first: bool) -> None:
        """Count a loss increase; keep the best point and its gradient."""
        s.increases += (f > s.f_prev).long()
        better = f > s.f_max
        s.x_max = torch.where(per_sample(better, s.x), s.x_cur, s.x_max)
        s.grad_max = torch.where(per_sample(better, s.x), grad, s.grad_max)
        s.f_max, s.f_prev = torch.where(better, f, s.f_max), f
        if first:
            s.f_max_ckpt = s.f_max.clone()

    def _checkpoint(self, s: _State, grad: torch.Tensor, window: int) -> torch.Tensor:
        """Halve the step and go back to the best point where condition 1 or 2 holds."""
        halve = (s.increases < self.rho * window) | (~s.halved_last & (s.f_max <= s.f_max_ckpt))
        wide = per_sample(halve, s.x)
        s.eta = torch.where(halve, s.eta / 2, s.eta)
        s.x_cur = torch.where(wide, s.x_max, s.x_cur)
        s.f_prev = torch.where(halve, s.f_max, s.f_prev)
        s.halved_last, s.f_max_ckpt = halve, s.f_max.clone()
        s.increases = torch.zeros_like(s.increases)
        return torch.where(wide, s.grad_max, grad)

    @staticmethod
    def _step(s: _State, grad: torch.Tensor, threat: ThreatModel, alpha: float) -> None:
        """``z = P(x + eta * dir)``, ``x' = P(x + alpha (z - x) + (1 - alpha)(x - x_prev))``."""
        ball = (s.x, threat.norm, threat.eps, threat.bounds)
        z = project(s.x_cur + per_sample(s.eta, s.x) * steepest_direction(grad, threat.norm), *ball)
        moved = s.x_cur + alpha * (z - s.x_cur) + (1 - alpha) * (s.x_cur - s.x_prev)
        s.x_prev, s.x_cur = s.x_cur, project(moved, *ball)


def _job(model: Classifier, x: torch.Tensor, threat: ThreatModel, seed: int) -> _Job:
    return _Job(model, threat, seed, x.clone(),
                torch.zeros(len(x), dtype=torch.bool, device=x.device),
                torch.zeros(len(x), dtype=torch.int64))


@ATTACKS.register("apgd-ce")
class APGD(_APGDBase):
    name = "apgd-ce"

    def __init__(self, loss: Literal["ce", "dlr"] = "ce", iterations: int = 100, restarts: int = 1,
                 momentum: float = 0.75, rho: float = 0.75, rel_step_size: float = 2.0,
                 random_start: bool = True) -> None:
        if loss not in ("ce", "dlr"):
            raise InputError(f"loss must be 'ce' or 'dlr', got {loss!r}")
        super().__init__(iterations, restarts, momentum, rho, rel_step_size, random_start)
        self.loss = loss

    def _min_classes(self, threat: ThreatModel) -> int:
        return 2 if self.loss == "ce" else 4 if threat.targeted else 3

    def perturb(self, model: Classifier, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                seed: int, keys: torch.Tensor, targets: torch.Tensor | None) -> AttackResult:
        goal, targeted = (y, False) if targets is None else (targets, True)
        return self._attack(_job(model, x, threat, seed), x, y, keys, goal[:, None], targeted,
                            LOSSES[self.loss, targeted])


@ATTACKS.register("apgd-t")
class APGDTargeted(_APGDBase):
    name = "apgd-t"

    def __init__(self, n_target_classes: int = 9, iterations: int = 100, restarts: int = 1,
                 momentum: float = 0.75, rho: float = 0.75, rel_step_size: float = 2.0,
                 random_start: bool = True) -> None:
        if n_target_classes < 1:
            raise InputError("n_target_classes must be >= 1")
        super().__init__(iterations, restarts, momentum, rho, rel_step_size, random_start)
        self.n_target_classes = n_target_classes

    def perturb(self, model: Classifier, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                seed: int, keys: torch.Tensor, targets: torch.Tensor | None) -> AttackResult:
        job = _job(model, x, threat, seed)
        if targets is not None:
            goals = targets[:, None]
        else:  # the highest non-true classes of the clean logits, best first
            with torch.no_grad():
                others = model.logits(x).scatter(1, y[:, None], -math.inf)
            job.queries += 1
            count = min(self.n_target_classes, model.num_classes - 1)
            goals = others.sort(dim=1, descending=True, stable=True).indices[:, :count]
        return self._attack(job, x, y, keys, goals, targets is not None, losses.targeted_dlr)
