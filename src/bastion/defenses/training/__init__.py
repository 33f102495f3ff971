"""Training procedures: plain, adversarial (PGD-AT, TRADES, fast AT), distillation, certified (IBP)."""

from bastion.defenses.training.loop import TrainingRecord, train_classifier
from bastion.defenses.training.objective import Objective

__all__ = ["Objective", "TrainingRecord", "train_classifier"]
