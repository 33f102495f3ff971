"""Certified training: IBP (Gowal et al. 2018) and CROWN-IBP (Zhang et al. 2020) objectives.

Papers: Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably
Robust Models", 2018; Zhang, Chen, Xiao, Gowal, Stanforth, Li, Boning, Hsieh, "Towards Stable and
Efficient Training of Verifiably Robust Neural Networks", ICLR 2020; initialisation from Shi, Wang,
Zhang, Yi, Hsieh, "Fast Certified Robust Training with Short Warmup", NeurIPS 2021.

Loss: ``kappa * CE(f(x), y) + (1 - kappa) * CE(-m, y)`` where ``m`` ``(B, C)`` are lower bounds on
the margins ``z_y - z_j`` over the ball of radius ``eps(progress)`` (entry ``y`` is 0; ``-m`` are the
worst-case logits up to a shift). IBP bounds ``m`` by interval propagation; CROWN-IBP by
``beta * m_CROWN-IBP + (1 - beta) * m_IBP``.
Schedules, over the fraction of training done (``progress``): ``eps`` is 0 for the first ``warmup``,
then rises to ``eps_train`` over the next ``ramp`` (``"linear"``, or ``"smooth"``: polynomial
``t**4`` for the first quarter of the ramp, then linear with a matching slope, which avoids the
early blow-up of bounds), then stays there. ``kappa`` goes linearly from ``kappa_start`` to
``kappa_end`` and CROWN-IBP's ``beta`` from ``beta_start`` to ``beta_end`` over the same ramp.
Defaults: warmup 0.1, ramp 0.5, kappa 1 -> 0.5 (IBP) or 1 -> 0 (CROWN-IBP), beta 1 -> 0,
``eps_train = threat.eps`` (Gowal et al. train at ``1.1 * eps`` on MNIST: pass ``eps_train``).
BatchNorm: in train mode the bounds fold each BatchNorm with the clean batch's statistics, as the
forward pass uses them. Cost per batch: IBP about 3 forward passes; CROWN-IBP adds a backward
bound pass with ``C`` rows per sample.
Shapes: x ``(B, *input_shape)`` in the model's bounds, y ``(B,)`` int64.

Example:
    >>> ibp_init(classifier.module)
    >>> objective = IBPObjective(ThreatModel(norm="linf", eps=0.1), eps_train=0.11)
    >>> record = fit(classifier, x, y, objective, epochs=30, optimizer="adam")
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bastion.certify.bounds import margin_spec
from bastion.certify.crown import crown_ibp_lower
from bastion.certify.ibp import InputRegion, interval_bounds, spec_lower
from bastion.certify.network import Chain, build_chain
from bastion.core.errors import InputError
from bastion.core.threat import ThreatModel
from bastion.defenses.training.adversarial import check_bounds, check_training_threat
from bastion.models.torch_adapter import TorchClassifier

Schedule = Literal["linear", "smooth"]
#: The smooth ramp is ``alpha * t**POWER`` up to ``t = KNEE``, then linear with the same slope.
POWER, KNEE = 4, 0.25


def ibp_init(module: nn.Module) -> nn.Module:
    """Re-initialise every Linear and Conv2d for IBP training (Shi et al. 2021); returns ``module``.

    Weights are drawn from ``N(0, sigma**2)`` with ``sigma = sqrt(2 * pi) / fan_in`` and biases set to
    zero. Why: with ``E|w| = sigma * sqrt(2 / pi)``, an interval of width ``d`` on each input becomes
    ``fan_in * sigma * sqrt(2 / pi) * d`` wide on average; if about half the inputs pass through
    their ReLUs, this sigma keeps interval widths constant from layer to layer instead of growing
    with depth, so early IBP training does not start from exploded bounds.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            fan_in = layer.weight[0].numel()
            with torch.no_grad():
                layer.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def ramp_fraction(progress: float, warmup: float, ramp: float, schedule: Schedule) -> float:
    """Where the ramp stands, in ``[0, 1]``, after ``progress`` of training (0 during warmup)."""
    if ramp == 0:
        return 1.0 if progress >= warmup else 0.0
    t = min(max((progress - warmup) / ramp, 0.0), 1.0)
    if schedule == "linear":
        return t
    alpha = 1.0 / (KNEE**POWER + POWER * KNEE ** (POWER - 1) * (1 - KNEE))
    if t < KNEE:
        return alpha * t**POWER
    return alpha * (KNEE**POWER + POWER * KNEE ** (POWER - 1) * (t - KNEE))


def _fraction_in(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class IBPObjective:
    """Interval bound propagation training.

    Args:
        threat: the budget to certify (untargeted, linf or l2, ``eps > 0``, bounds = the model's).
        eps_train: the radius trained at the end of the ramp, default ``threat.eps``.
        warmup: fraction of training with eps 0 (clean training), default 0.1.
        ramp: fraction of training over which eps rises to ``eps_train``, default 0.5.
        schedule: ``"smooth"`` (default) or ``"linear"`` eps ramp.
        kappa_start, kappa_end: weight of the clean loss at the start and end of the ramp (1 -> 0.5).
    """

    name = "ibp"

    def __init__(
        self,
        threat: ThreatModel,
        *,
        eps_train: float | None = None,
        warmup: float = 0.1,
        ramp: float = 0.5,
        schedule: Schedule = "smooth",
        kappa_start: float = 1.0,
        kappa_end: float = 0.5,
    ) -> None:
        self.threat = check_training_threat(threat)
        eps_train = threat.eps if eps_train is None else eps_train
        if isinstance(eps_train, bool) or not isinstance(eps_train, (int, float)) or not (
                math.isfinite(eps_train) and eps_train > 0):
            raise InputError(f"eps_train must be a finite number > 0, got {eps_train!r}")
        self.eps_train = float(eps_train)
        self.warmup, self.ramp = _fraction_in("warmup", warmup), _fraction_in("ramp", ramp)
        if self.warmup + self.ramp > 1 + 1e-9:
            raise InputError(f"warmup + ramp must be at most 1 (fractions of training), got {warmup} + {ramp}")
        if schedule not in ("linear", "smooth"):
            raise InputError(f"schedule must be 'linear' or 'smooth', got {schedule!r}")
        self.schedule: Schedule = schedule
        self.kappa_start = _fraction_in("kappa_start", kappa_start)
        self.kappa_end = _fraction_in("kappa_end", kappa_end)

    def eps_at(self, progress: float) -> float:
        """The training radius after ``progress`` (in [0, 1]) of training."""
        return self.eps_train * ramp_fraction(progress, self.warmup, self.ramp, self.schedule)

    def _linear(self, progress: float, start: float, end: float) -> float:
        return start + (end - start) * ramp_fraction(progress, self.warmup, self.ramp, "linear")

    def kappa_at(self, progress: float) -> float:
        """Weight of the clean cross-entropy after ``progress`` of training."""
        return self._linear(progress, self.kappa_start, self.kappa_end)

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
        """``kappa * CE(clean) + (1 - kappa) * CE(-margin lower bounds)`` of the batch, in train mode."""
        check_bounds(classifier, self.threat)
        eps, kappa = self.eps_at(progress), self.kappa_at(progress)
        module.train()
        with _batch_statistics(module) as stats:
            clean = F.cross_entropy(module(classifier.normalise(x)), y)
        if eps == 0 or kappa == 1:
            return clean
        chain = build_chain(classifier, batch_stats=stats)
        region = InputRegion.around(x, self.threat.norm, eps, classifier.bounds)
        margins = self._margins(chain, region, margin_spec(y, classifier.num_classes, x.dtype), progress)
        return kappa * clean + (1 - kappa) * F.cross_entropy(-margins, y)

    def _margins(self, chain: Chain, region: InputRegion, spec: torch.Tensor, progress: float) -> torch.Tensor:
        return spec_lower(chain, interval_bounds(chain, region), spec)

    def params(self) -> dict[str, Any]:
        return {"threat": self.threat.model_dump(mode="json"), "eps_train": self.eps_train, "warmup": self.warmup,
                "ramp": self.ramp, "schedule": self.schedule, "kappa_start": self.kappa_start,
                "kappa_end": self.kappa_end}


class CrownIBPObjective(IBPObjective):
    """CROWN-IBP training: margins ``beta * CROWN-IBP + (1 - beta) * IBP``, ``beta`` from 1 to 0 over the ramp.

    Args:
        threat, eps_train, warmup, ramp, schedule: as for :class:`IBPObjective`.
        kappa_start, kappa_end: clean-loss weight, default 1 -> 0 (Zhang et al. 2020).
        beta_start, beta_end: weight of the CROWN-IBP bound at the start and end of the ramp (1 -> 0).
    """

    name = "crown-ibp"

    def __init__(
        self,
        threat: ThreatModel,
        *,
        eps_train: float | None = None,
        warmup: float = 0.1,
        ramp: float = 0.5,
        schedule: Schedule = "smooth",
        kappa_start: float = 1.0,
        kappa_end: float = 0.0,
        beta_start: float = 1.0,
        beta_end: float = 0.0,
    ) -> None:
        super().__init__(threat, eps_train=eps_train, warmup=warmup, ramp=ramp, schedule=schedule,
                         kappa_start=kappa_start, kappa_end=kappa_end)
        self.beta_start = _fraction_in("beta_start", beta_start)
        self.beta_end = _fraction_in("beta_end", beta_end)

    def beta_at(self, progress: float) -> float:
        """Weight of the CROWN-IBP bound after ``progress`` of training."""
        return self._linear(progress, self.beta_start, self.beta_end)

    def _margins(self, chain: Chain, region: InputRegion, spec: torch.Tensor, progress: float) -> torch.Tensor:
        beta = self.beta_at(progress)
        if beta == 0:
            return super()._margins(chain, region, spec, progress)
        ibp, crown = crown_ibp_lower(chain, region, spec)
        return beta * crown + (1 - beta) * ibp

    def params(self) -> dict[str, Any]:
        return super().params() | {"beta_start": self.beta_start, "beta_end": self.beta_end}


@contextmanager
def _batch_statistics(module: nn.Module) -> Iterator[dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]]:
    """Record, per BatchNorm in train mode, the mean and biased variance of its input batch."""
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(layer: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        if layer.training:
            dims = [0] + list(range(2, inputs[0].ndim))
            stats[layer] = (inputs[0].mean(dim=dims), inputs[0].var(dim=dims, unbiased=False))

    handles = [layer.register_forward_hook(record) for layer in module.modules()
               if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d))]
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
