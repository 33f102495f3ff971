"""The extraction contract: what an extraction attack returns, and the input checks every attack shares.

An extraction (model-stealing) attack queries a victim :class:`~bastion.models.base.Classifier`
within a strict query budget and trains a copy on the answers. It is called as
``attack.extract(victim, pool, budget=..., x_eval=..., seed=...)`` and returns an
:class:`ExtractionResult`: the copy, the queries it was trained on, and an
:class:`ExtractionRecord` for the evidence, with fidelity and accuracy against the number of queries.

Conventions shared by every attack in this package:

- ``budget`` is the most victim queries (samples sent to the victim) the attack may use; it is
  never exceeded (:class:`~bastion.attacks.extraction.oracle.BudgetedOracle` refuses to).
- ``output`` says what the copy learns from: ``"probabilities"`` (the victim's softmax scores),
  ``"labels"`` (one-hot top labels) or ``"auto"`` (the default: probabilities unless the victim is
  label-only). A victim with ``access == "labels"`` only ever yields labels, whatever is asked.
- Fidelity is the agreement of the copy's labels with a reference model's (the victim by default)
  on held-out ``x_eval``; accuracy is the copy's agreement with ``y_eval``. Those evaluation
  predictions are the auditor's, not the attacker's: they do not count against the budget.
- The curve holds one point per checkpoint: a copy trained from scratch on the *first* ``n``
  queries, so points of one run (and runs of different strategies) are directly comparable.
- The same ``seed`` gives the same queries, copies and record (same device and thread count).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from bastion.core.errors import InputError
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

ArrayLike = np.ndarray | torch.Tensor
#: What the attacker asks the victim for.
OutputKind = Literal["auto", "probabilities", "labels"]
#: What the copy was actually trained on.
TargetKind = Literal["probabilities", "labels"]
OUTPUT_KINDS: tuple[str, ...] = ("auto", "probabilities", "labels")
#: The first default checkpoint; later ones double it (250, 500, 1000, ...) up to the budget.
FIRST_CHECKPOINT = 250


class CurvePoint(BaseModel):
    """A copy trained on the first ``queries`` victim answers, measured on the evaluation data."""

    model_config = ConfigDict(extra="forbid")

    queries: int
    fidelity: float = Field(description="agreement of the copy's labels with the reference's, in [0, 1]")
    accuracy: float | None = Field(default=None, description="the copy's accuracy on y_eval; None without labels")


class ExtractionRecord(BaseModel):
    """The evidence of one extraction run (JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid")

    attack: str
    budget: int
    queries: int = Field(description="victim queries used, <= budget")
    output: OutputKind = Field(description="what the attacker asked for")
    targets: TargetKind = Field(description="what the copy was trained on")
    fidelity: float = Field(description="the final copy's fidelity (the last curve point)")
    accuracy: float | None = None
    curve: list[CurvePoint]
    eval_samples: int
    seed: int
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ExtractionResult:
    """An extraction run's copy and evidence.

    Attributes:
        substitute: the copy trained on every query used (a white-box ``TorchClassifier`` on CPU).
        record: the :class:`ExtractionRecord`.
        queried: ``(Q, *input_shape)`` float32 inputs sent to the victim, in query order.
        answers: ``(Q, C)`` float32 training targets: the victim's probabilities, or one-hot labels.
    """

    substitute: TorchClassifier
    record: ExtractionRecord
    queried: torch.Tensor
    answers: torch.Tensor

    @property
    def fidelity(self) -> float:
        return self.record.fidelity

    @property
    def accuracy(self) -> float | None:
        return self.record.accuracy

    @property
    def queries(self) -> int:
        return self.record.queries

    @property
    def curve(self) -> list[CurvePoint]:
        return self.record.curve


# --- checks shared by the attacks -------------------------------------------------------------------


def check_victim(victim: object) -> Classifier:
    if not isinstance(victim, Classifier):
        raise InputError(f"victim must be a bastion Classifier (logits, predict, num_classes, ...), "
                         f"got {type(victim).__name__}")
    return victim


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int ``>= 1``; :class:`InputError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_output(output: object) -> OutputKind:
    if output not in OUTPUT_KINDS:
        raise InputError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    return output  # type: ignore[return-value]


def resolve_targets(output: OutputKind, victim: Classifier) -> TargetKind:
    """Labels when asked for or when the victim is label-only; probabilities otherwise."""
    return "labels" if output == "labels" or victim.access == "labels" else "probabilities"


def check_inputs(x: object, victim: Classifier, name: str) -> torch.Tensor:
    """``x`` as a float32 CPU tensor ``(N, *victim.input_shape)``, finite and in the victim's bounds."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"{name} must be floating point, got dtype {x.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise InputError(f"{name} must be floating point, got dtype {x.dtype}")
        tensor = x.detach().cpu()
    else:
        raise InputError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")
    if tensor.ndim < 1 or tuple(tensor.shape[1:]) != tuple(victim.input_shape) or not len(tensor):
        raise InputError(f"{name} must be a non-empty batch of shape (N, {', '.join(map(str, victim.input_shape))}),"
                         f" got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32).contiguous()
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    low, high = victim.bounds
    if float(tensor.min()) < low - 1e-6 or float(tensor.max()) > high + 1e-6:
        raise InputError(f"{name} ranges over [{float(tensor.min()):.4g}, {float(tensor.max()):.4g}], outside "
                         f"the victim's bounds [{low}, {high}]")
    return tensor


def check_eval_labels(y_eval: object, count: int, num_classes: int) -> torch.Tensor | None:
    """``y_eval`` as int64 ``(count,)`` labels in ``[0, C)``, or ``None``."""
    if y_eval is None:
        return None
    if not isinstance(y_eval, np.ndarray | torch.Tensor):
        raise InputError(f"y_eval must be a NumPy array or a torch tensor, got {type(y_eval).__name__}")
    labels = torch.as_tensor(np.asarray(y_eval) if isinstance(y_eval, np.ndarray) else y_eval.detach().cpu())
    if labels.shape != (count,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise InputError(f"y_eval must be {count} integer labels of shape ({count},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise InputError(f"y_eval labels must lie in 0..{num_classes - 1}")
    return labels


def check_checkpoints(checkpoints: Sequence[int] | None, budget: int) -> list[int]:
    """Sorted distinct checkpoints in ``1..budget`` ending at ``budget``.

    Default: 250, 500, 1000, ... (doubling) below the budget, then the budget itself.
    """
    if checkpoints is None:
        points, value = [], FIRST_CHECKPOINT
        while value < budget:
            points.append(value)
            value *= 2
        return [*points, budget]
    values = [check_positive_int(c, "every checkpoint") for c in checkpoints]
    if not values or max(values) > budget:
        raise InputError(f"checkpoints must be a non-empty list of query counts in 1..{budget} (the budget), "
                         f"got {list(checkpoints)!r}")
    return sorted(set(values) | {budget})
