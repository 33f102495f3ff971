"""Weight averaging: an exponential moving average (EMA) of the weights, kept beside the trained ones.

Adversarially trained networks can gain robust accuracy from evaluating an average of their recent weights
instead of the last ones (Gowal et al., "Uncovering the Limits of Adversarial Training against Norm-Bounded
Adversarial Examples", 2020, section 4.4; Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", 2018); with a schedule that anneals the rate to zero the last weights are nearly an average
already (``benchmarks/RESULTS.md``: no gain on the Fashion-MNIST TRADES recipe).

After every optimiser step ``t`` (0-based) each floating-point tensor of the state dict (parameters and
buffers, such as batch norm's running statistics) moves towards the trained value::

    average <- d * average + (1 - d) * weight,   d = min(decay, (1 + t) / (10 + t))

The warm-up ``(1 + t) / (10 + t)`` keeps the first steps' average from clinging to the random
initialisation. Integer buffers (batch norm's step counter) are copied as they are.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.defenses.training.checkpoint import state_snapshot


def check_decay(decay: object) -> float:
    """``decay`` as a float in (0, 1).

    Raises:
        InputError: anything else (``0.999`` is a usual value: an average over about the last 1,000 steps).
    """
    if isinstance(decay, bool) or not isinstance(decay, int | float) or not math.isfinite(decay) \
            or not 0.0 < decay < 1.0:
        raise InputError(f"the weight-average decay must be a number in (0, 1) such as 0.999, got {decay!r}")
    return float(decay)


class WeightAverage:
    """The running average of ``module``'s state dict.

    Args:
        module: the module being trained; the average starts as a copy of its current state.
        decay: the EMA decay ``d`` in (0, 1), e.g. 0.999 (see the module docstring).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = check_decay(decay)
        self.tensors = state_snapshot(module)

    def update(self, module: nn.Module, step: int) -> None:
        """Fold in ``module``'s weights after optimiser step ``step`` (0-based, counted over the whole run)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for name, weight in module.state_dict().items():
                average = self.tensors[name]
                if average.is_floating_point():
                    average.lerp_(weight.detach(), 1.0 - decay)
                else:
                    average.copy_(weight)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the average from a checkpoint's tensors (same names and shapes)."""
        missing = sorted(set(self.tensors) ^ set(tensors))
        if missing:
            raise InputError(f"the checkpoint's weight average does not match the model (differs in: "
                             f"{', '.join(missing[:5])}); delete the checkpoint folder to start afresh")
        for name, tensor in tensors.items():
            self.tensors[name].copy_(tensor)

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights in ``module``; its own weights come back afterwards."""
        trained = state_snapshot(module)
        module.load_state_dict(self.tensors)
        try:
            yield
        finally:
            module.load_state_dict(trained)
