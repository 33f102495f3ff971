"""The contract between the training loop and what it minimises.

Every training method (cross-entropy, PGD adversarial training, TRADES, fast adversarial training,
distillation, IBP, CROWN-IBP) is an ``Objective``: given a batch it returns the mean loss to
minimise. The loop owns everything else: shuffling, the optimiser and its schedule, checkpoints,
resuming, early stopping and progress.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from bastion.models.torch_adapter import TorchClassifier


@runtime_checkable
class Objective(Protocol):
    """A training loss.

    Attributes:
        name: short method name for records and reports (``"trades"``, ``"ibp"``, ...).
    """

    name: str

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
        """Mean loss of a batch, differentiable in the module's parameters.

        Args:
            classifier: the adapter (bounds, ``normalise``); attacks may be run against it.
            module: ``classifier.module`` with trainable parameters; the objective sets its
                train/eval mode as it needs (the loop leaves it in train mode).
            x: ``(B, *input_shape)`` float32 inputs in ``classifier.bounds``. y: ``(B,)`` int64.
            progress: fraction of training done, in ``[0, 1]``, for eps or mixing ramps.
            seed: per-step seed for any randomness; keys: ``(B,)`` int64 per-sample keys.
        """
        ...

    def params(self) -> dict[str, Any]:
        """The objective's hyper-parameters, for the evidence record (JSON-serialisable)."""
        ...
