"""Defensive distillation.

Paper: Papernot, McDaniel, Wu, Jha, Swami, "Distillation as a Defense to Adversarial Perturbations
against Deep Neural Networks", IEEE S&P 2016.
Procedure: train a teacher with ``softmax(logits / T)``; train a student of the same architecture
on the teacher's soft labels ``softmax(teacher_logits / T)``, also at temperature ``T``; deploy the
student at ``T = 1`` (its raw logits). Defaults: ``T = 20`` (the paper studies 1 to 100).
Caveat: the student's logits are about ``T`` times larger than usual, so its softmax saturates and
cross-entropy gradients vanish. Most of the robustness that gradient attacks measure is this
gradient masking: Carlini & Wagner (2017) break distilled networks with a margin loss on logits.
Evaluate a distilled model with the scan's margin/DLR attacks and its sanity flags, never with
PGD on cross-entropy alone.
Losses are not multiplied by ``T**2`` (Hinton et al.'s rescaling). At high ``T`` both networks
must grow logits about ``T`` times larger than plain training does, which takes more or larger
steps: on digits at ``T = 20``, Adam at ``lr = 3e-2`` for 8 epochs matches plain accuracy; with SGD,
raise the learning rate by about ``T`` (the gradients are ``T`` times smaller).

Example:
    >>> result = distill(teacher, student, x, y, temperature=20, epochs=10, optimizer="adam")
    >>> result.student  # deploy this one
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.core.errors import InputError
from bastion.defenses.training.checkpoint import module_digest
from bastion.defenses.training.loop import fit
from bastion.defenses.training.plain import CrossEntropy
from bastion.defenses.training.record import TrainingRecord
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

DEFAULT_TEMPERATURE = 20.0


class Distillation:
    """Cross-entropy between the teacher's and the student's softmax at temperature ``T``.

    Args:
        teacher: a classifier with scores (``access`` ``white`` or ``scores``), trained at ``T``
            (see :func:`distill`); its ``logits`` are evaluated without gradients.
        temperature: ``T``, default 20.

    The true labels are not used: the student learns the teacher's soft labels only, as in the paper.
    """

    name = "distill"

    def __init__(self, teacher: Classifier, *, temperature: float = DEFAULT_TEMPERATURE) -> None:
        if not isinstance(teacher, Classifier):
            raise InputError(f"teacher must be a bastion Classifier, got {type(teacher).__name__}")
        if teacher.access == "labels":
            raise InputError("the teacher must output scores; a label-only model cannot be distilled from")
        if not (math.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature must be a finite number > 0, got {temperature}")
        self.teacher = teacher
        self.temperature = float(temperature)

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
        """Mean soft-label cross-entropy of a batch ``x`` ``(B, *input_shape)`` at temperature ``T``."""
        self._check_student(classifier)
        with torch.no_grad():
            soft_labels = F.softmax(self.teacher.logits(x) / self.temperature, dim=1)
        module.train()
        log_probs = F.log_softmax(module(classifier.normalise(x)) / self.temperature, dim=1)
        return -(soft_labels * log_probs).sum(dim=1).mean()

    def _check_student(self, student: TorchClassifier) -> None:
        if student is self.teacher:
            raise InputError("the student must be a different model from the teacher")
        if student.num_classes != self.teacher.num_classes or student.input_shape != tuple(self.teacher.input_shape):
            raise InputError(
                f"the teacher has {self.teacher.num_classes} classes and input shape {tuple(self.teacher.input_shape)};"
                f" the student has {student.num_classes} and {student.input_shape}"
            )

    def params(self) -> dict[str, Any]:
        module = getattr(self.teacher, "module", None)
        digest = module_digest(module) if isinstance(module, nn.Module) else None
        return {"temperature": self.temperature, "teacher_kind": self.teacher.kind, "teacher_sha256": digest}


@dataclass(frozen=True)
class Distilled:
    """The outcome of :func:`distill`: the student to deploy, its teacher and both training records.

    ``teacher_record`` is ``None`` when the teacher was given already trained.
    """

    student: TorchClassifier
    teacher: Classifier
    student_record: TrainingRecord
    teacher_record: TrainingRecord | None


def distill(
    teacher: Classifier,
    student: TorchClassifier,
    x: Any,
    y: Any,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    train_teacher: bool = True,
    teacher_options: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    **fit_options: Any,
) -> Distilled:
    """Train the teacher at ``temperature`` (unless ``train_teacher=False``), then the student on its soft labels.

    Args:
        teacher: a :class:`TorchClassifier` to train (or, with ``train_teacher=False``, any
            classifier with scores, already trained at ``temperature``).
        student: the :class:`TorchClassifier` to distil into (usually the same architecture).
        x, y: training data ``(N, *input_shape)`` in bounds and ``(N,)`` labels (the labels train the
            teacher only).
        temperature: ``T``, default 20.
        teacher_options: :func:`~bastion.defenses.training.fit` options that differ for the teacher
            (``{"epochs": 5, "early_stop": None}``, say).
        checkpoint_dir: a folder; the teacher checkpoints under ``teacher/``, the student under ``student/``.
        fit_options: passed to :func:`~bastion.defenses.training.fit` for both runs (``epochs``
            required, ``optimizer``, ``lr``, ``seed``, ``validation``, ``early_stop``, ``resume``, ...).
    """
    if "epochs" not in fit_options:
        raise InputError("distill needs epochs=...")
    if "checkpoint_dir" in (teacher_options or {}):
        raise InputError("pass checkpoint_dir to distill itself; the teacher checkpoints under its teacher/ folder")
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    teacher_record = None
    if train_teacher:
        if not isinstance(teacher, TorchClassifier):
            raise InputError("train_teacher=True needs a TorchClassifier teacher; pass train_teacher=False "
                             "to distil from a trained classifier of another kind")
        options = fit_options | (teacher_options or {})
        teacher_record = fit(teacher, x, y, CrossEntropy(temperature), **options,
                             checkpoint_dir=None if folder is None else folder / "teacher")
    student_record = fit(student, x, y, Distillation(teacher, temperature=temperature), **fit_options,
                         checkpoint_dir=None if folder is None else folder / "student")
    return Distilled(student, teacher, student_record, teacher_record)
