"""Optimisers and learning-rate schedules for the training loop.

The schedule is a pure function of the step number, so the loop's only scheduler state is its step
counter (which makes resuming exact). Each step uses the factor at the middle of the step,
``(step + 0.5) / total_steps``, so no step of a cosine or one-cycle schedule gets a zero rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import get_args

import torch

from bastion.core.errors import InputError
from bastion.defenses.training.record import OptimiserSettings, OptimizerName, ScheduleName

#: Default base learning rate per optimiser.
DEFAULT_LR: dict[str, float] = {"sgd": 0.1, "adam": 1e-3}


def _constant(_: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _piecewise(progress: float) -> float:
    # Madry et al. / Rice et al.: divide by 10 at half and at three quarters of training.
    return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01


def _one_cycle(progress: float) -> float:
    # Wong et al. 2020 (fast AT): linear warm-up to the peak at 40% of training, linear decay to 0.
    peak = 0.4
    return progress / peak if progress < peak else max(0.0, (1.0 - progress) / (1.0 - peak))


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "piecewise": _piecewise,
    "one-cycle": _one_cycle,
}


def optimiser_settings(
    optimizer: str, lr: float | None, momentum: float, weight_decay: float, schedule: str, batch_size: int
) -> OptimiserSettings:
    """Validated settings; ``lr=None`` takes :data:`DEFAULT_LR` for the optimiser."""
    if optimizer not in get_args(OptimizerName):
        raise InputError(f"optimizer must be one of {', '.join(get_args(OptimizerName))}, got {optimizer!r}")
    if schedule not in get_args(ScheduleName):
        raise InputError(f"schedule must be one of {', '.join(get_args(ScheduleName))}, got {schedule!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise InputError(f"lr must be a finite number > 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"momentum must be in [0, 1), got {momentum}")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise InputError(f"weight_decay must be >= 0, got {weight_decay}")
    return OptimiserSettings(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                             schedule=schedule, batch_size=batch_size)


def build_optimiser(parameters: Iterable[torch.nn.Parameter], settings: OptimiserSettings) -> torch.optim.Optimizer:
    """SGD (with momentum, not Nesterov) or Adam (weight decay added to the gradient, as torch's Adam does)."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def learning_rate(settings: OptimiserSettings, step: int, total_steps: int) -> float:
    """The rate of 0-based ``step`` out of ``total_steps``."""
    return settings.lr * SCHEDULES[settings.schedule]((step + 0.5) / total_steps)


def set_learning_rate(optimiser: torch.optim.Optimizer, lr: float) -> None:
    for group in optimiser.param_groups:
        group["lr"] = lr
