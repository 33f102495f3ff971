"""Training a copy on victim answers, with bastion's training loop.

The copy is built by a model factory (``() -> nn.Module``, e.g. :func:`bastion.models.zoo.digits_cnn`)
and wrapped in a :class:`~bastion.models.torch_adapter.TorchClassifier` with the victim's input
shape, classes and bounds. It is trained by :func:`~bastion.defenses.training.fit` on the
:class:`SoftTargets` objective: cross-entropy against the victim's answers, which are probabilities
(knowledge distillation at temperature 1) or one-hot labels (then it is plain cross-entropy).

Defaults (:class:`CopyTraining`): Adam at ``lr = 1e-3``, 30 epochs, batches of 32, constant rate,
and at least 1000 optimiser steps: a copy trained on a few queries gets more epochs, so that a point
of the fidelity curve measures what its queries carry rather than how little the copy was trained.
Initial weights are drawn from a generator seeded with the copy's seed, without touching the
caller's global torch generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.extraction.base import check_positive_int
from bastion.core.errors import InputError
from bastion.defenses.training.loop import fit
from bastion.models.base import Classifier, predict_in_batches
from bastion.models.torch_adapter import TorchClassifier

#: Builds a fresh, untrained copy: a module mapping ``(N, *input_shape)`` inputs to ``(N, C)`` logits.
ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class CopyTraining:
    """How each copy is trained: ``epochs`` (30) passes of Adam at ``lr`` (1e-3) in batches of ``batch_size`` (32),
    with more epochs where needed to take at least ``min_steps`` (1000) optimiser steps (0 turns that off).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    min_steps: int = 1000

    def __post_init__(self) -> None:
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise InputError(f"min_steps must be an integer >= 0, got {self.min_steps!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not math.isfinite(self.lr) \
                or self.lr <= 0:
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}")

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def epochs_for(self, samples: int) -> int:
        """Epochs for a training set of ``samples``: ``epochs``, or more to reach ``min_steps`` steps."""
        steps_per_epoch = math.ceil(samples / self.batch_size)
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))


class SoftTargets:
    """Cross-entropy against per-sample target distributions: ``-sum_c t[i, c] * log_softmax(z_i)[c]``.

    Args:
        targets: ``(N, C)`` rows summing to 1 (probabilities or one-hot), aligned with the training
            inputs given to :func:`~bastion.defenses.training.fit`; the loop's per-sample keys are the
            samples' positions, which index this table.
    """

    name = "soft-targets"

    def __init__(self, targets: torch.Tensor) -> None:
        if targets.ndim != 2:
            raise InputError(f"targets must have shape (N, C), got {tuple(targets.shape)}")
        self.targets = targets.detach().float().cpu()

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
        """Mean soft cross-entropy of a batch ``x`` ``(B, *input_shape)``; ``y`` is unused."""
        module.train()
        log_probs = F.log_softmax(module(classifier.normalise(x)), dim=1)
        targets = self.targets[keys.cpu()].to(log_probs.device)
        return -(targets * log_probs).sum(dim=1).mean()

    def params(self) -> dict[str, Any]:
        return {"samples": len(self.targets)}


def new_copy(factory: ModelFactory, victim: Classifier, seed: int) -> TorchClassifier:
    """An untrained copy shaped like ``victim`` (input shape, classes, bounds), initialised from ``seed``."""
    if not callable(factory):
        raise InputError(f"copy_factory must be a callable returning an nn.Module, got {type(factory).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    if not isinstance(module, nn.Module):
        raise InputError(f"copy_factory must return an nn.Module, got {type(module).__name__}")
    return TorchClassifier(module, victim.input_shape, victim.num_classes, bounds=victim.bounds)


def train_copy(
    factory: ModelFactory,
    victim: Classifier,
    x: torch.Tensor,
    targets: torch.Tensor,
    training: CopyTraining,
    *,
    seed: int,
) -> TorchClassifier:
    """A fresh copy trained on ``x`` ``(Q, *input_shape)`` and ``targets`` ``(Q, C)``.

    The same ``seed`` gives the same initial weights and batch order, whatever ``Q``.
    """
    copy = new_copy(factory, victim, seed)
    fit(copy, x, targets.argmax(dim=1), SoftTargets(targets), epochs=training.epochs_for(len(x)),
        batch_size=training.batch_size, optimizer="adam", lr=training.lr, seed=seed)
    return copy


def predictions(model: Classifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model``'s labels ``(N,)`` int64 on the CPU for ``x`` ``(N, *input_shape)``, on the model's device."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        x = x.to(device)
    return predict_in_batches(model, x, batch_size).cpu()


def agreement(model: Classifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``x`` ``(N, *input_shape)`` on which ``model`` predicts ``labels`` ``(N,)``."""
    return float((predictions(model, x) == labels.cpu()).double().mean())
