"""Training procedures: plain, adversarial (PGD-AT, TRADES, fast AT), distillation, certified (IBP), private.

``fit(classifier, x, y, objective, ...)`` is the loop; an objective turns a batch into a loss
(:class:`Objective`). ``objective_from_name`` and ``train_by_name`` pick a method by name.
``fit_private`` trains by DP-SGD through Opacus (the optional ``privacy`` extra, imported on use).
"""

from bastion.defenses.training.certified import CrownIBPObjective, IBPObjective, ibp_init
from bastion.defenses.training.distillation import Distillation, Distilled, distill
from bastion.defenses.training.dp import DPTrainingRecord, PrivacyAccounting, default_delta, fit_private
from bastion.defenses.training.fast_at import FastAdversarial
from bastion.defenses.training.loop import EpochCallback, StepCallback, fit, train_classifier
from bastion.defenses.training.methods import (
    METHODS,
    method_names,
    method_options,
    objective_from_name,
    train_by_name,
)
from bastion.defenses.training.objective import Objective
from bastion.defenses.training.pgd_at import PGDAdversarial
from bastion.defenses.training.plain import CrossEntropy
from bastion.defenses.training.record import EpochRecord, OptimiserSettings, TrainingRecord
from bastion.defenses.training.trades import TRADES
from bastion.defenses.training.validation import EarlyStop

__all__ = [
    "METHODS",
    "method_options",
    "TRADES",
    "CrossEntropy",
    "CrownIBPObjective",
    "Distillation",
    "DPTrainingRecord",
    "Distilled",
    "EarlyStop",
    "EpochCallback",
    "EpochRecord",
    "FastAdversarial",
    "IBPObjective",
    "Objective",
    "OptimiserSettings",
    "PGDAdversarial",
    "PrivacyAccounting",
    "StepCallback",
    "TrainingRecord",
    "default_delta",
    "distill",
    "fit",
    "fit_private",
    "ibp_init",
    "method_names",
    "objective_from_name",
    "train_by_name",
    "train_classifier",
]
