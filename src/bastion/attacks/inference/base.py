"""What the privacy attacks share: the membership-attack contract, input checks and score queries.

A membership attack only reads a model's scores through the :class:`~bastion.models.base.Classifier`
protocol (``logits(x) -> (N, C)``), so a remote endpoint with ``"scores"`` access can be attacked
just like a local network. Scores are treated as logits up to a per-row constant (log-probabilities
from an ONNX or scikit-learn adapter are fine): everything here goes through a softmax.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from bastion.core.errors import CapabilityError, InputError
from bastion.core.threat import Access, access_allows
from bastion.models.base import Classifier

ArrayLike = np.ndarray | torch.Tensor


@runtime_checkable
class MembershipAttack(Protocol):
    """Anything that scores how likely each ``(x, y)`` was in a model's training set.

    ``score`` returns ``(N,)`` float64 NumPy scores, higher meaning "more likely a member"; only
    their order matters to the ROC metrics. ``get_params()`` goes into the evidence record.
    """

    name: str

    def score(self, target: Classifier, x: ArrayLike, y: ArrayLike) -> np.ndarray: ...

    def get_params(self) -> dict[str, Any]: ...


def require_access(model: Classifier, need: Access, attack: str) -> None:
    """Raise :class:`CapabilityError` when ``model`` offers less than ``need`` (``white`` > ``scores`` > ``labels``)."""
    if not isinstance(model, Classifier):
        raise InputError(f"{attack} needs a bastion Classifier (logits, predict, num_classes, input_shape, "
                         f"bounds, access), got {type(model).__name__}")
    if not access_allows(model.access, need):
        raise CapabilityError(f"{attack} needs {need} access; the model offers only {model.access}")


def labelled_batch(model: Classifier, x: ArrayLike, y: ArrayLike, name: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float32 ``(N, *input_shape)`` and ``y`` as int64 ``(N,)`` CPU tensors, checked against ``model``.

    Raises:
        InputError: not an array, lengths that differ, a wrong per-sample shape, non-finite values or
            values outside the model's bounds, labels that are not integers in ``[0, C)``.
    """
    inputs, labels = as_tensor(x, name), as_tensor(y, f"labels of {name}")
    if labels.ndim != 1 or inputs.ndim == 0 or len(inputs) != len(labels):
        raise InputError(f"{name} and its labels must have the same length, with labels of shape (N,); got "
                         f"{name} of shape {tuple(inputs.shape)} and labels of shape {tuple(labels.shape)}")
    if tuple(inputs.shape[1:]) != tuple(model.input_shape):
        raise InputError(f"{name} has per-sample shape {tuple(inputs.shape[1:])}; the model expects "
                         f"{tuple(model.input_shape)}")
    if not inputs.is_floating_point():
        raise InputError(f"{name} must be floating point in the model's bounds, got {inputs.dtype}")
    inputs = inputs.to(torch.float32)
    if len(inputs) and not bool(torch.isfinite(inputs).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    low, high = model.bounds
    if len(inputs) and (float(inputs.min()) < low - 1e-6 or float(inputs.max()) > high + 1e-6):
        raise InputError(f"{name} ranges over [{float(inputs.min()):.4g}, {float(inputs.max()):.4g}], outside the "
                         f"model's bounds [{low}, {high}]")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"labels of {name} must be integer class indices, got {labels.dtype}")
    labels = labels.to(torch.int64)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= model.num_classes):
        raise InputError(f"labels of {name} range over [{int(labels.min())}, {int(labels.max())}]; the model "
                         f"has {model.num_classes} classes (0..{model.num_classes - 1})")
    return inputs.contiguous(), labels.contiguous()


def as_tensor(values: object, name: str) -> torch.Tensor:
    """A detached CPU tensor from a NumPy array or a tensor; :class:`InputError` for anything else."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    if isinstance(values, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(values))
    raise InputError(f"{name} must be a NumPy array or a torch tensor, got {type(values).__name__}")


def query_logits(model: Classifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Scores ``(N, C)`` float64 on the CPU for ``x`` ``(N, *input_shape)``, in batches, without gradients."""
    device = getattr(model, "device", None)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            if isinstance(device, torch.device):
                batch = batch.to(device)
            outputs.append(model.logits(batch).detach().cpu().to(torch.float64))
    if not outputs:
        return torch.zeros((0, model.num_classes), dtype=torch.float64)
    logits = torch.cat(outputs)
    if logits.shape != (len(x), model.num_classes):
        raise InputError(f"the model returned scores of shape {tuple(logits.shape)}; expected "
                         f"({len(x)}, {model.num_classes})")
    return logits


def true_label_log_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log p_y`` ``(N,)``: minus the cross-entropy loss of the true label, from logits ``(N, C)``."""
    return torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``phi = log(p_y / (1 - p_y))`` ``(N,)`` from logits ``(N, C)``, without forming ``p_y``.

    ``phi = z_y - logsumexp_{j != y} z_j``: exact, and finite even when ``p_y`` rounds to 1 (where
    ``log(1 - p_y)`` would be ``-inf``). Invariant to adding a constant to a row of logits.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - torch.logsumexp(others, dim=1)
