"""HopSkipJump — decision-based minimum-norm attack from the top label only.

Paper: Chen, Jordan, Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack",
IEEE S&P 2020.
Norms: l2 (Gaussian probes, normalised-gradient steps) and linf (uniform probes, sign steps).
Access: labels (``model.predict`` only). Untargeted starts are keyed uniform noise in the bounds
(``init_tries`` draws); targeted starts must be classified as the target or the sample fails.
Each iteration: binary search to the boundary (threshold ``gamma / d^1.5`` for l2, ``gamma / d^2``
for linf, d the input size), a Monte-Carlo gradient estimate from ``initial_evals * sqrt(t)``
probes (``max_evals`` caps each estimate, not the total) of radius ``0.1 * range`` at t = 1,
then ``sqrt(d) * theta * dist`` (l2) or ``d * theta * dist`` (linf), then a geometric step-size
search from ``dist / sqrt(t)`` and a new binary search. Every input sent counts as a query.
Defaults: ``iterations=40``, ``max_evals=10000``, ``initial_evals=100``, ``gamma=1.0``,
``init_tries=20``, ``batch_size=4096`` (most inputs per model call; probes are also drawn in
chunks of at most 2^24 values, or one sample's probes if more).
Early stop: HSJ minimises the distance while staying adversarial; a sample stops as soon as its
distance is <= eps, which is success under the threat model (the engine projects the rest onto
the eps-ball, where they usually fail). Vectorised over samples; probes are batched and chunked.
Shapes: x ``(N, *input_shape)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> threat = ThreatModel(norm="l2", eps=1.0, access="labels")
    >>> result = HopSkipJump(iterations=20)(model, x, y, threat, seed=0)
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import ATTACKS, EvasionAttack, goal_reached
from bastion.attacks.norms import distance, per_sample
from bastion.core.errors import InputError
from bastion.core.records import AttackResult
from bastion.core.seeding import keyed_normal, keyed_uniform
from bastion.core.threat import Norm, ThreatModel
from bastion.models.base import Classifier

_INIT_STREAM = 1 << 20  # streams of the starting noise; probe streams are the iteration numbers
_MAX_HALVINGS = 30
_PROBE_ELEMENTS = 1 << 24  # probe values drawn at once (more only if one sample needs more)



def _trail(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(N, B)`` values to broadcast against ``(N, B, ...)``."""
    return values.reshape(*values.shape, *([1] * (like.ndim - values.ndim)))


def _toward(x: torch.Tensor, adv: torch.Tensor, alpha: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Points between ``x`` and ``adv``: the blend at ``alpha`` in [0, 1] (l2) or ``adv`` clipped to
    the linf ball of radius ``alpha`` around ``x`` (linf)."""
    if norm == "l2":
        return x + per_sample(alpha, x) * (adv - x)
    a = per_sample(alpha, x)
    return x + torch.maximum(torch.minimum(adv - x, a), -a)


class _Oracle:
    """Goal-reached decisions from ``model.predict``, counting one query per sample per input."""

    def __init__(self, model: Classifier, y: torch.Tensor, targets: torch.Tensor | None,
                 queries: torch.Tensor, batch_size: int) -> None:
        self.model, self.y, self.targets = model, y, targets
        self.queries, self.batch_size = queries, batch_size

    def __call__(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``(M,)`` bool for inputs ``z`` ``(M, ...)`` belonging to samples ``index`` ``(M,)``."""
        if not len(z):
            return torch.zeros(0, dtype=torch.bool, device=z.device)
        with torch.no_grad():
            labels = torch.cat([self.model.predict(z[i : i + self.batch_size])
                                for i in range(0, len(z), self.batch_size)])
        self.queries.index_add_(0, index.cpu(), torch.ones(len(index), dtype=torch.int64))
        goal = None if self.targets is None else self.targets[index]
        return goal_reached(labels, self.y[index], goal)


@ATTACKS.register("hopskipjump")
class HopSkipJump(EvasionAttack):
    name = "hopskipjump"
    access = "labels"
    norms = ("l2", "linf")

    def __init__(
        self,
        iterations: int = 40,
        max_evals: int = 10000,
        initial_evals: int = 100,
        gamma: float = 1.0,
        init_tries: int = 20,
        batch_size: int = 4096,
    ) -> None:
        if min(iterations, max_evals, initial_evals, init_tries, batch_size) < 1 or gamma <= 0:
            raise InputError("iterations, evals, init_tries and batch_size must be >= 1; gamma > 0")
        self.iterations = iterations
        self.max_evals = max_evals
        self.initial_evals = initial_evals
        self.gamma = gamma
        self.init_tries = init_tries
        self.batch_size = batch_size

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
        norm, eps, (low, high) = threat.norm, threat.eps, threat.bounds
        queries = torch.zeros(len(x), dtype=torch.int64)
        oracle = _Oracle(model, y, targets, queries, self.batch_size)
        d = x[0].numel()
        theta = self.gamma / (d**1.5 if norm == "l2" else d**2)
        everyone = torch.arange(len(x), device=x.device)
        won = oracle(x, everyone)  # already at the goal: distance 0
        best, best_dist = x.clone(), torch.full((len(x),), math.inf, device=x.device, dtype=x.dtype)
        best_dist[won] = 0
        act = self._starts(oracle, x, keys, seed, (~won).nonzero().squeeze(1), best, threat)
        xa = x[act]
        cur = self._boundary(oracle, xa, best[act], act, norm, theta, high - low)
        dist = distance(cur - xa, norm)
        best[act], best_dist[act] = cur, dist
        for t in range(1, self.iterations + 1):
            keep = dist > eps
            act, xa, cur, dist = act[keep], xa[keep], cur[keep], dist[keep]
            if not len(act):
                break
            radius = dist * ((math.sqrt(d) if norm == "l2" else d) * theta)
            if t == 1:
                radius = torch.full_like(dist, 0.1 * (high - low))
            evals = min(int(self.initial_evals * math.sqrt(t)), self.max_evals)
            grad = self._gradient(oracle, cur, act, keys[act], seed, t, radius, evals, threat)
            if norm == "l2":
                step = grad / per_sample(distance(grad, "l2").clamp_min(1e-12), grad)
            else:
                step = grad.sign()
            moved = self._step(oracle, cur, act, step, dist / math.sqrt(t), threat)
            cur = self._boundary(oracle, xa, moved, act, norm, theta, high - low)
            dist = distance(cur - xa, norm)
            better = dist < best_dist[act]
            best[act[better]], best_dist[act[better]] = cur[better], dist[better]
        success = best_dist <= eps
        return AttackResult(best, success.cpu(), distance(best - x, norm), queries)

    def _starts(self, oracle: _Oracle, x: torch.Tensor, keys: torch.Tensor, seed: int,
                todo: torch.Tensor, starts: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        """Write adversarial noise starts into ``starts``; returns the samples that found one."""
        low, high = threat.bounds
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for attempt in range(self.init_tries):
            if not len(todo):
                break
            u = keyed_uniform(keys[todo], seed, _INIT_STREAM + attempt, tuple(x.shape[1:]),
                              dtype=x.dtype).to(x.device)
            noise = low + (high - low) * u
            ok = oracle(noise, todo)
            starts[todo[ok]], found[todo[ok]] = noise[ok], True
            todo = todo[~ok]
        return found.nonzero().squeeze(1)

    @staticmethod
    def _boundary(oracle: _Oracle, x: torch.Tensor, adv: torch.Tensor, index: torch.Tensor,
                  norm: Norm, theta: float, span: float) -> torch.Tensor:
        """Binary search from adversarial ``adv`` toward ``x``; returns the adversarial side."""
        low = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        if norm == "l2":
            high, tol = torch.ones_like(low), torch.full_like(low, theta)
        else:
            high = distance(adv - x, "linf")
            tol = torch.clamp(high * theta, max=theta * span)
        todo = ((high - low) > tol).nonzero().squeeze(1)
        while len(todo):
            mid = (high[todo] + low[todo]) / 2
            ok = oracle(_toward(x[todo], adv[todo], mid, norm), index[todo])
            high[todo] = torch.where(ok, mid, high[todo])
            low[todo] = torch.where(ok, low[todo], mid)
            todo = todo[(high[todo] - low[todo]) > tol[todo]]
        return _toward(x, adv, high, norm)

    def _gradient(self, oracle: _Oracle, cur: torch.Tensor, index: torch.Tensor,
                  keys: torch.Tensor, seed: int, stream: int, radius: torch.Tensor, evals: int,
                  threat: ThreatModel) -> torch.Tensor:
        """Monte-Carlo estimate of the boundary normal at ``cur`` from ``evals`` probes per sample,
        with the paper's baseline (mean decision) subtracted; chunked over samples."""
        shape = (evals, *cur.shape[1:])
        grad = torch.empty_like(cur)
        chunk = min(self.batch_size, max(1, _PROBE_ELEMENTS // cur[0].numel()))
        per = max(1, chunk // evals)  # samples per chunk; a sample's probes are never split
        for i in range(0, len(cur), per):
            part = slice(i, i + per)
            k, c, r = keys[part], cur[part, None], per_sample(radius[part], cur[part, None])
            if threat.norm == "l2":
                u = keyed_normal(k, seed, stream, shape, dtype=cur.dtype).to(cur.device)
            else:
                u = 2 * keyed_uniform(k, seed, stream, shape, dtype=cur.dtype).to(cur.device) - 1
            u = u / _trail(u.flatten(2).norm(dim=2).clamp_min(1e-12), u)
            probes = (c + r * u).clamp(*threat.bounds)
            direction = (probes - c) / r
            sign = oracle(probes.flatten(0, 1), index[part].repeat_interleave(evals))
            sign = sign.reshape(-1, evals).to(cur.dtype) * 2 - 1
            mean = sign.mean(1, keepdim=True)
            sign = torch.where(mean.abs() == 1, sign, sign - mean)
            grad[part] = (_trail(sign, direction) * direction).mean(1)
        return grad

    @staticmethod
    def _step(oracle: _Oracle, cur: torch.Tensor, index: torch.Tensor, step: torch.Tensor,
              size: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        """Geometric step-size search: halve ``size`` until ``cur + size * step`` stays adversarial
        (at most 30 halvings; then the sample stays at ``cur``)."""
        moved, size = cur.clone(), size.clone()
        todo = torch.arange(len(cur), device=cur.device)
        for _ in range(_MAX_HALVINGS):
            trial = (cur[todo] + per_sample(size[todo], step) * step[todo]).clamp(*threat.bounds)
            ok = oracle(trial, index[todo])
            moved[todo[ok]] = trial[ok]
            todo = todo[~ok]
            if not len(todo):
                break
            size[todo] = size[todo] / 2
        return moved
