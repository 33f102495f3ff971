"""Training a classifier, plainly or adversarially (PGD adversarial training, Madry et al. 2018).

The adversarial variant replaces each batch by PGD examples found against the current weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.norms import project
from bastion.core.errors import InputError
from bastion.core.seeding import seed_everything
from bastion.core.threat import ThreatModel
from bastion.models.torch_adapter import TorchClassifier

EpochCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainingRecord:
    """Per-epoch mean training loss and the final training accuracy (on clean inputs)."""

    epochs: int
    losses: list[float]
    train_accuracy: float
    adversarial: dict[str, object] | None


def train_classifier(
    classifier: TorchClassifier,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    adversarial: ThreatModel | None = None,
    attack_steps: int = 7,
    on_epoch: EpochCallback | None = None,
) -> TrainingRecord:
    """Train ``classifier.module`` in place with Adam and cross-entropy.

    Args:
        classifier: a torch adapter; its bounds and normalisation apply during training too.
        x: ``(N, *input_shape)`` float32 in bounds. y: ``(N,)`` int labels.
        adversarial: when set, each batch is replaced by PGD examples (``attack_steps`` steps,
            step size ``2.5 * eps / steps``, random start, no early stop) under this threat model.
        on_epoch: called as ``on_epoch(epoch, epochs, mean_loss)`` after each epoch (progress bars).
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("epochs and batch_size must be >= 1 and lr > 0")
    if len(x) != len(y) or not len(x):
        raise InputError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    seed_everything(seed)
    inputs = torch.as_tensor(x, dtype=torch.float32)
    labels = torch.as_tensor(y, dtype=torch.int64)
    attack = PGD(steps=attack_steps, early_stop=False) if adversarial else None
    losses: list[float] = []
    generator = torch.Generator().manual_seed(seed)
    with classifier.trainable() as module:
        optimiser = torch.optim.Adam(module.parameters(), lr=lr)
        for epoch in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                batch, batch_labels = inputs[index], labels[index]
                if attack is not None and adversarial is not None:
                    batch = _adversarial_batch(attack, classifier, batch, batch_labels, adversarial,
                                               seed=seed + epoch, keys=index)
                module.train()
                loss = F.cross_entropy(module(classifier.normalise(batch)), batch_labels)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(index)
            losses.append(total / len(inputs))
            if on_epoch is not None:
                on_epoch(epoch + 1, epochs, losses[-1])
        module.eval()
    accuracy = float((classifier.predict(inputs) == labels).float().mean())
    return TrainingRecord(epochs, losses, accuracy,
                          adversarial.model_dump() | {"steps": attack_steps} if adversarial else None)


def _adversarial_batch(
    attack: PGD,
    classifier: TorchClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    seed: int,
    keys: torch.Tensor,
) -> torch.Tensor:
    """PGD's final iterates, unverified: training wants the high-loss points even where they fail."""
    proposed = attack.perturb(classifier, x, y, threat, seed=seed, keys=keys, targets=None)
    return project(proposed.x_adv, x, threat.norm, threat.eps, threat.bounds).detach()
