"""Measuring an extraction: fidelity and accuracy of copies trained on growing prefixes of the queries.

Each curve point trains a fresh copy (same seed, so the same initial weights and batch order) on
the first ``n`` victim answers and measures it on the held-out evaluation data. The last point uses
every query the attack made (fewer than the budget when the attacker's pool ran out); its copy is
the attack's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bastion.attacks.extraction.base import (
    ArrayLike,
    CurvePoint,
    ExtractionRecord,
    ExtractionResult,
    OutputKind,
    check_eval_labels,
    check_inputs,
    check_victim,
)
from bastion.attacks.extraction.oracle import BudgetedOracle
from bastion.attacks.extraction.substitute import CopyTraining, ModelFactory, agreement, predictions, train_copy
from bastion.core.errors import InputError
from bastion.core.seeding import derive_seed
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Held-out data: ``x`` ``(M, *input_shape)``, the reference model's labels ``(M,)``, true labels or ``None``."""

    x: torch.Tensor
    reference_labels: torch.Tensor
    y: torch.Tensor | None

    @classmethod
    def build(
        cls, victim: Classifier, x_eval: ArrayLike, y_eval: ArrayLike | None, reference: Classifier | None
    ) -> Evaluation:
        """Check the evaluation data and label it with ``reference`` (default ``victim``), outside any budget."""
        x = check_inputs(x_eval, victim, "x_eval")
        y = check_eval_labels(y_eval, len(x), victim.num_classes)
        model = victim if reference is None else check_victim(reference)
        if reference is not None and (reference.num_classes != victim.num_classes
                                      or tuple(reference.input_shape) != tuple(victim.input_shape)):
            raise InputError("reference must have the victim's input shape and number of classes")
        return cls(x, predictions(model, x), y)

    def measure(self, copy: Classifier, queries: int) -> CurvePoint:
        accuracy = None if self.y is None else agreement(copy, self.x, self.y)
        return CurvePoint(queries=queries, fidelity=agreement(copy, self.x, self.reference_labels),
                          accuracy=accuracy)


def learning_curve(
    factory: ModelFactory,
    victim: Classifier,
    queried: torch.Tensor,
    answers: torch.Tensor,
    checkpoints: Sequence[int],
    evaluation: Evaluation,
    training: CopyTraining,
    *,
    seed: int,
) -> tuple[list[CurvePoint], TorchClassifier]:
    """One point per checkpoint below ``Q = len(queried)`` and one at ``Q``; returns the points and the last copy."""
    used = len(queried)
    copy_seed = derive_seed(seed, "copy")
    curve = []
    for count in [c for c in checkpoints if c < used]:
        copy = train_copy(factory, victim, queried[:count], answers[:count], training, seed=copy_seed)
        curve.append(evaluation.measure(copy, count))
    copy = train_copy(factory, victim, queried, answers, training, seed=copy_seed)
    curve.append(evaluation.measure(copy, used))
    return curve, copy


def extraction_result(
    *,
    attack: str,
    factory: ModelFactory,
    victim: Classifier,
    oracle: BudgetedOracle,
    output: OutputKind,
    queried: torch.Tensor,
    answers: torch.Tensor,
    checkpoints: Sequence[int],
    evaluation: Evaluation,
    training: CopyTraining,
    seed: int,
    params: dict[str, Any],
) -> ExtractionResult:
    """Train the curve's copies and assemble the :class:`ExtractionResult` of a finished query phase."""
    if oracle.used != len(queried) or len(answers) != len(queried):
        raise RuntimeError(f"{attack}: {oracle.used} queries counted but {len(queried)} inputs and "
                           f"{len(answers)} answers kept")  # a bug in the attack, not bad input
    if not len(queried):
        raise InputError(f"{attack} made no queries: give a non-empty pool")
    curve, copy = learning_curve(factory, victim, queried, answers, checkpoints, evaluation, training, seed=seed)
    record = ExtractionRecord(
        attack=attack, budget=oracle.budget, queries=oracle.used, output=output, targets=oracle.targets,
        fidelity=curve[-1].fidelity, accuracy=curve[-1].accuracy, curve=curve, eval_samples=len(evaluation.x),
        seed=seed, params={**params, "training": training.params()},
    )
    return ExtractionResult(copy, record, queried, answers)
