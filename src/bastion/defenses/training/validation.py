"""Validation after each epoch and early stopping on robust accuracy.

Early stopping keeps the weights of the epoch with the best robust accuracy (PGD on a fixed set
of validation points, ties broken by clean accuracy) and stops after ``patience`` epochs without
improvement. This is what catches *robust overfitting* of PGD-AT (Rice et al. 2020: robust test
accuracy peaks soon after the first learning-rate drop, then declines) and *catastrophic
overfitting* of fast adversarial training (Wong et al. 2020: PGD accuracy collapses to about zero
within one epoch); in both cases the model handed back is the best epoch, not the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bastion.attacks.evasion.pgd import PGD
from bastion.core.errors import InputError
from bastion.core.ids import sample_keys
from bastion.core.seeding import derive_seed
from bastion.core.threat import ThreatModel
from bastion.defenses.training.adversarial import frozen
from bastion.defenses.training.record import EarlyStopSettings
from bastion.models.base import predict_in_batches
from bastion.models.torch_adapter import TorchClassifier

#: Samples per attack batch during validation.
VALIDATION_BATCH = 256


@dataclass(frozen=True)
class EarlyStop:
    """Select the epoch by robust validation accuracy.

    Args:
        threat: the attack budget (untargeted; bounds equal to the model's).
        patience: epochs without improvement before training stops, default 3.
        attack_steps: PGD steps (step ``2.5 * eps / steps``, random start, early exit), default 10.
        points: the first ``points`` validation samples are attacked, default 512 (all for fewer).
    """

    threat: ThreatModel
    patience: int = 3
    attack_steps: int = 10
    points: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.threat, ThreatModel):
            raise InputError(f"EarlyStop needs a ThreatModel, got {type(self.threat).__name__}")
        if self.threat.targeted:
            raise InputError("EarlyStop measures untargeted robustness; set targeted=False in its threat model")
        for name in ("patience", "attack_steps", "points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"EarlyStop {name} must be an integer >= 1, got {value!r}")

    def settings(self) -> EarlyStopSettings:
        return EarlyStopSettings(threat=self.threat.model_dump(mode="json"), patience=self.patience,
                                 attack_steps=self.attack_steps, points=self.points)


@dataclass(frozen=True)
class Scores:
    """Validation accuracies of one epoch; ``robust`` is ``None`` without early stopping."""

    clean: float
    robust: float | None

    def beats(self, other: Scores | None) -> bool:
        """Strictly better: higher robust accuracy, or equal robust and higher clean accuracy."""
        if other is None:
            return True
        return (self.robust or 0.0, self.clean) > (other.robust or 0.0, other.clean)


class Validator:
    """Measures a classifier on fixed validation data, the same points and attack seed every epoch.

    Args:
        x, y: checked validation tensors ``(M, *input_shape)`` and ``(M,)``.
        early_stop: when set, robust accuracy is measured too.
        seed: the run's seed; the attack's seed is derived from it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, early_stop: EarlyStop | None, seed: int) -> None:
        self.x, self.y = x, y
        self.early_stop = early_stop
        self.attack_seed = derive_seed(seed, "validation-attack")
        self.points = 0 if early_stop is None else min(early_stop.points, len(x))
        self.keys = sample_keys(x[: self.points], y[: self.points]) if self.points else None

    def check(self, classifier: TorchClassifier) -> None:
        if self.early_stop is not None and tuple(self.early_stop.threat.bounds) != tuple(classifier.bounds):
            raise InputError(
                f"the EarlyStop threat bounds {self.early_stop.threat.bounds} differ from the model's bounds "
                f"{classifier.bounds}; build the ThreatModel with bounds=classifier.bounds"
            )

    def score(self, classifier: TorchClassifier, module: nn.Module) -> Scores:
        """Clean accuracy on all points, robust accuracy (if early stopping) on the first ``points``."""
        device = classifier.device
        with frozen(module):
            predictions = predict_in_batches(classifier, self.x.to(device)).cpu()
            clean = float((predictions == self.y).float().mean())
            robust = None
            if self.early_stop is not None and self.keys is not None:
                robust = self._robust_accuracy(classifier, self.early_stop, self.keys, device)
        return Scores(clean, robust)

    def _robust_accuracy(
        self, classifier: TorchClassifier, early_stop: EarlyStop, keys: torch.Tensor, device: torch.device
    ) -> float:
        attack = PGD(steps=early_stop.attack_steps)
        robust = 0
        for start in range(0, self.points, VALIDATION_BATCH):
            stop = min(start + VALIDATION_BATCH, self.points)
            result = attack(classifier, self.x[start:stop].to(device), self.y[start:stop].to(device),
                            early_stop.threat, seed=self.attack_seed, keys=keys[start:stop])
            robust += int((~result.success).sum())
        return robust / self.points
