"""Extraction (model-stealing) attacks: Knockoff Nets and Jacobian-based dataset augmentation.

Each attack queries a victim classifier within a strict budget (probabilities or labels only) and
trains a copy with bastion's training loop. The result reports fidelity (agreement with the victim
on held-out data) and the copy's accuracy as a curve against the number of queries; see
:mod:`bastion.attacks.extraction.base` for the shared conventions and
:mod:`bastion.defenses.output` for the output hardening that answers these attacks.
"""

from bastion.attacks.extraction.base import (
    CurvePoint,
    ExtractionRecord,
    ExtractionResult,
    OutputKind,
    TargetKind,
)
from bastion.attacks.extraction.jacobian import JacobianAugmentation
from bastion.attacks.extraction.knockoff import STRATEGIES, KnockoffNets
from bastion.attacks.extraction.oracle import BudgetedOracle, QueryBudgetExceeded
from bastion.attacks.extraction.substitute import CopyTraining, SoftTargets, train_copy

__all__ = [
    "STRATEGIES",
    "BudgetedOracle",
    "CopyTraining",
    "CurvePoint",
    "ExtractionRecord",
    "ExtractionResult",
    "JacobianAugmentation",
    "KnockoffNets",
    "OutputKind",
    "QueryBudgetExceeded",
    "SoftTargets",
    "TargetKind",
    "train_copy",
]
