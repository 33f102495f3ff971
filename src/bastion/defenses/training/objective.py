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

        What :func:`~bastion.defenses.training.fit` passes: ``progress`` is ``step / total_steps``
        (0 at the first step, below 1 at the last); ``seed`` is derived from the run's seed and the
        step number; ``keys`` are the samples' positions in the training data, so a sample keeps
        its key across epochs. Prefer :func:`bastion.core.seeding.keyed_uniform` (and kin) on
        ``(keys, seed)`` to the global generator: a sample's draw then depends on neither its batch
        nor the order of calls (the global torch generator is checkpointed too, so resuming is exact
        either way).
        Attacks run through ``classifier.logits`` get eval mode (BatchNorm running statistics) by
        themselves; call ``module.train()`` before the forward pass whose loss is returned.
        """
        ...

    def params(self) -> dict[str, Any]:
        """The objective's hyper-parameters, for the evidence record (JSON-serialisable)."""
        ...
