"""What the workflows share: progress lines, endpoint facts, the check that data fits a model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bastion.attacks.base import shape_hint
from bastion.core.errors import InputError
from bastion.data.sources import Dataset
from bastion.models.base import Classifier

#: ``progress(line)``: called with a line of text before each step of a workflow (the CLI prints it).
Progress = Callable[[str], None]


def no_progress(line: str) -> None:
    """The default progress callback: does nothing."""


def check_fits(dataset: Dataset, model: Classifier, option: str) -> None:
    """Refuse data whose per-sample shape or labels do not fit ``model``; ``option`` names it in the message.

    Raises:
        InputError: an empty dataset, another per-sample shape, or labels outside ``0 .. C-1``.
    """
    if not len(dataset):
        raise InputError(f"{option} is empty")
    if tuple(dataset.input_shape) != tuple(model.input_shape):
        raise InputError(f"{option} has per-sample shape {tuple(dataset.input_shape)}; the model expects "
                         f"{tuple(model.input_shape)}"
                         + shape_hint(tuple(dataset.input_shape), tuple(model.input_shape)))
    if int(dataset.y.max()) >= model.num_classes:
        raise InputError(f"{option} has labels up to {int(dataset.y.max())}; the model has {model.num_classes} "
                         f"classes (0..{model.num_classes - 1})")


def check_in_bounds(dataset: Dataset, model: Classifier, option: str) -> None:
    """Refuse data with non-finite values or values outside ``model.bounds``; ``option`` names it in the message.

    Raises:
        InputError: NaN or infinite values, or values below or above the model's bounds.
    """
    x = dataset.x
    if not np.isfinite(x).all():
        raise InputError(f"{option} contains NaN or infinite values")
    low, high = model.bounds
    if len(x) and (float(x.min()) < low - 1e-6 or float(x.max()) > high + 1e-6):
        raise InputError(f"{option} ranges over [{float(x.min()):.4g}, {float(x.max()):.4g}], outside the model's "
                         f"bounds [{low:g}, {high:g}]: rescale the data or set --bounds")
