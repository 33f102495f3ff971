"""Checking and converting the arrays a training run is given."""

from __future__ import annotations

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.core.ids import array_digest
from bastion.models.torch_adapter import TorchClassifier

ArrayLike = np.ndarray | torch.Tensor


def labelled_tensors(
    classifier: TorchClassifier, x: ArrayLike, y: ArrayLike, *, name: str = "training data"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float32 ``(N, *input_shape)`` and ``y`` as int64 ``(N,)`` CPU tensors, checked.

    Raises:
        InputError: empty data, lengths that differ, a wrong per-sample shape, values outside the
            classifier's bounds or not finite, labels that are not integers in ``[0, C)``.
    """
    inputs = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    labels = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().cpu()
    if inputs.ndim == 0 or labels.ndim != 1 or len(inputs) != len(labels) or not len(inputs):
        raise InputError(
            f"{name}: x and y must be non-empty and of equal length with y of shape (N,), got x of shape "
            f"{tuple(inputs.shape)} and y of shape {tuple(labels.shape)}"
        )
    if tuple(inputs.shape[1:]) != classifier.input_shape:
        raise InputError(
            f"{name}: samples have shape {tuple(inputs.shape[1:])}; the model expects {classifier.input_shape}"
        )
    if not inputs.is_floating_point():
        raise InputError(f"{name}: x must be floating point, got {inputs.dtype}")
    inputs = inputs.to(torch.float32)
    if not bool(torch.isfinite(inputs).all()):
        raise InputError(f"{name}: x contains NaN or infinite values")
    low, high = classifier.bounds
    if float(inputs.min()) < low - 1e-6 or float(inputs.max()) > high + 1e-6:
        raise InputError(
            f"{name}: x ranges over [{float(inputs.min()):.4g}, {float(inputs.max()):.4g}], outside the "
            f"model's bounds [{low}, {high}]; rescale the data or set the bounds"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"{name}: y must hold integer class indices, got {labels.dtype}")
    labels = labels.to(torch.int64)
    if int(labels.min()) < 0 or int(labels.max()) >= classifier.num_classes:
        raise InputError(
            f"{name}: labels range over [{int(labels.min())}, {int(labels.max())}]; the model has "
            f"{classifier.num_classes} classes (0..{classifier.num_classes - 1})"
        )
    return inputs.contiguous(), labels.contiguous()


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of checked inputs and labels (names the data a checkpoint was trained on)."""
    return array_digest(x.numpy(), y.numpy())


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive slices of a permutation; the last one may be smaller."""
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
