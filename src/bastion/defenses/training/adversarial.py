"""What the adversarial objectives share: threat checks, frozen weights while attacking, PGD examples.

Attacks run through ``classifier.logits``, which puts the module in eval mode (batch-norm uses its
running statistics, dropout is off) and restores its mode afterwards; the objective then switches
the module to train mode for its own loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.norms import project
from bastion.core.errors import InputError
from bastion.core.threat import ThreatModel
from bastion.models.torch_adapter import TorchClassifier


def check_training_threat(threat: ThreatModel) -> ThreatModel:
    """The threat model of an adversarial objective: untargeted, white-box, ``eps > 0``."""
    if not isinstance(threat, ThreatModel):
        raise InputError(f"threat must be a ThreatModel, got {type(threat).__name__}")
    if threat.eps <= 0:
        raise InputError("adversarial training needs eps > 0; use the plain objective for eps 0")
    if threat.targeted:
        raise InputError("adversarial training defends against untargeted attacks; set targeted=False")
    return threat


def check_bounds(classifier: TorchClassifier, threat: ThreatModel) -> None:
    """Refuse a threat model whose bounds are not the classifier's (examples would leave the data range)."""
    if tuple(threat.bounds) != tuple(classifier.bounds):
        raise InputError(
            f"the threat model's bounds {threat.bounds} differ from the model's bounds {classifier.bounds}; "
            "build the ThreatModel with bounds=classifier.bounds"
        )


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters without gradients while an attack runs (it needs input gradients only)."""
    previous = [parameter.requires_grad for parameter in module.parameters()]
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), previous, strict=True):
            parameter.requires_grad_(flag)


def pgd_examples(
    classifier: TorchClassifier,
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    rel_step_size: float,
    random_start: bool,
    seed: int,
    keys: torch.Tensor,
) -> torch.Tensor:
    """PGD's final iterates ``(B, *input_shape)``, detached, inside the budget and bounds.

    Every point takes every step (no early stop) and failed points are kept: training wants the
    high-loss points whether or not they already flip the label.
    """
    attack = PGD(steps=steps, rel_step_size=rel_step_size, random_start=random_start, early_stop=False)
    with frozen(module):
        proposed = attack.perturb(classifier, x, y, threat, seed=seed, keys=keys, targets=None)
    return project(proposed.x_adv, x, threat.norm, threat.eps, threat.bounds).detach()


def check_steps(steps: int, rel_step_size: float | None) -> float:
    """Validate an inner attack's step count; returns the step size relative to eps (default ``2.5 / steps``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    relative = 2.5 / steps if rel_step_size is None else float(rel_step_size)
    if not (math.isfinite(relative) and relative > 0):
        raise InputError(f"rel_step_size must be > 0, got {rel_step_size}")
    return relative
