"""Shadow models: who is IN which shadow's training set, and a default way to train one.

A shadow model imitates the target: same architecture and training recipe, trained on data from the
same distribution, but with a training set the attacker chose and therefore knows. Membership
attacks that calibrate per example (LiRA) train several shadows on random halves of a population so
that every example is IN for half of them and OUT for the other half.

Training is the caller's: a :data:`ShadowTrainer` is any ``train_shadow(x, y, seed) -> Classifier``.
:func:`shadow_trainer` builds one from a model factory and bastion's :func:`train_classifier`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.defenses.training.loop import train_classifier
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

#: ``train_shadow(x, y, seed) -> Classifier``: train a model like the target on ``x`` ``(M, *input_shape)``
#: float32 and ``y`` ``(M,)`` int64 (NumPy), deterministically for a given ``seed``.
ShadowTrainer = Callable[[np.ndarray, np.ndarray, int], Classifier]


def shadow_membership(count: int, shadows: int, seed: int = 0) -> np.ndarray:
    """Which population example trains which shadow: bool ``(shadows, count)``.

    Every column (example) is IN for exactly ``shadows // 2`` shadows, chosen uniformly at random and
    independently per example, so each shadow trains on about half the population. The same seed
    gives the same matrix.
    """
    if shadows < 2:
        raise InputError(f"membership needs at least 2 shadow models (one IN, one OUT per example), got {shadows}")
    ranks = np.random.default_rng(seed).random((shadows, count)).argsort(axis=0).argsort(axis=0)
    return ranks < shadows // 2


def shadow_trainer(
    model_factory: Callable[[], nn.Module],
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> ShadowTrainer:
    """A :data:`ShadowTrainer` that trains ``model_factory()`` with :func:`train_classifier` (Adam, cross-entropy).

    Args:
        model_factory: builds a fresh, untrained ``nn.Module`` mapping ``(N, *input_shape)`` to ``(N, C)``
            logits; its weights are initialised under ``torch.manual_seed(seed)``.
        input_shape, num_classes: per-sample shape and ``C``; default the module's own ``input_shape``
            and ``num_classes`` attributes (the :mod:`bastion.models.zoo` factories set them).
        bounds: the input range, default ``(0, 1)``.
        epochs: default 10. batch_size: default 64. lr: Adam's rate, default 1e-3. Match the target's
            recipe: a shadow that trains differently from the target calibrates the attack badly.

    Returns:
        ``train_shadow(x, y, seed) -> TorchClassifier``, deterministic in ``seed`` on one device and
        thread count.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise InputError(f"epochs must be an integer >= 1, got {epochs!r}")

    def train_shadow(x: np.ndarray, y: np.ndarray, seed: int) -> Classifier:
        torch.manual_seed(seed)
        module = model_factory()
        shape = input_shape if input_shape is not None else getattr(module, "input_shape", None)
        classes = num_classes if num_classes is not None else getattr(module, "num_classes", None)
        if shape is None or classes is None:
            raise InputError("pass input_shape and num_classes to shadow_trainer: the model factory's module "
                             "does not carry them as attributes")
        classifier = TorchClassifier(module, tuple(shape), int(classes), bounds=bounds)
        train_classifier(classifier, x, y, epochs=int(epochs), batch_size=batch_size, lr=lr, seed=seed)
        return classifier

    return train_shadow
