"""Differentially private training: DP-SGD (Abadi et al., CCS 2016) through Opacus, an optional extra.

Each step draws a batch by Poisson sampling (every example joins independently with probability
``q = 1 / ceil(N / batch_size)``, so batches vary in size around ``batch_size``), clips every example's
gradient to L2 norm ``max_grad_norm``, sums them, adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` and divides by the expected batch size ``q * N``. The privacy
accountant turns ``(q, noise_multiplier, steps)`` into the ``(epsilon, delta)`` guarantee: example-level
differential privacy under add/remove-one adjacency, for the whole training run.

Accountants: ``"rdp"`` (default; Rényi DP of the subsampled Gaussian, Mironov et al. 2019, converted
to ``(epsilon, delta)``) or ``"prv"`` (privacy random variables, Gopi et al. 2021: numerically
tighter, so a smaller epsilon for the same run). The guarantee assumes the noise and the sampling are
secret; bastion seeds both from ``seed`` so that runs are reproducible, which is right for
experiments and audits but not for a production release (Opacus's ``secure_mode`` is not used).

Opacus is imported only when :func:`fit_private` runs; without it the call raises
:class:`~bastion.core.errors.CapabilityError` saying ``pip install 'bastion[privacy]'``.

Example:
    >>> record = fit_private(classifier, x, y, epochs=20, noise_multiplier=1.1, lr=0.5)
    >>> record.privacy.epsilon, record.privacy.delta
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bastion.core.errors import CapabilityError, InputError
from bastion.core.seeding import derive_seed, seed_everything
from bastion.defenses.training.data import ArrayLike, labelled_tensors
from bastion.defenses.training.loop import EpochCallback
from bastion.defenses.training.optim import build_optimiser, optimiser_settings
from bastion.defenses.training.record import EpochRecord, TrainingRecord
from bastion.models.base import predict_in_batches
from bastion.models.torch_adapter import TorchClassifier

Accountant = Literal["rdp", "prv"]
#: Per-example gradients are clipped to this L2 norm unless told otherwise.
DEFAULT_MAX_GRAD_NORM = 1.0
#: What the guarantee protects: one training example added or removed.
ADJACENCY = "add/remove one training example"
_INSTALL_HINT = "pip install 'bastion[privacy]'"
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class PrivacyAccounting(BaseModel):
    """The accountant's ``(epsilon, delta)`` guarantee for a DP-SGD run and what it was computed from."""

    model_config = ConfigDict(extra="forbid")

    mechanism: Literal["dp-sgd"] = "dp-sgd"
    accountant: Accountant
    epsilon: float = Field(description="the accountant's epsilon at delta after every step taken")
    delta: float
    noise_multiplier: float = Field(description="noise standard deviation / max_grad_norm")
    max_grad_norm: float = Field(description="L2 norm each example's gradient is clipped to")
    sample_rate: float = Field(description="Poisson sampling probability q of each example per step")
    expected_batch_size: float = Field(description="q * train_samples")
    steps: int
    target_epsilon: float | None = Field(default=None, description="the budget the noise was calibrated to")
    adjacency: str = ADJACENCY
    poisson_sampling: bool = True
    secure_rng: bool = Field(default=False, description="False: noise and sampling come from seeded generators")
    opacus_version: str


class DPTrainingRecord(TrainingRecord):
    """A :class:`TrainingRecord` (``method="dp-sgd"``) plus the accountant's guarantee in ``privacy``."""

    privacy: PrivacyAccounting


def default_delta(train_samples: int) -> float:
    """``1 / N`` rounded down to a power of ten (``N = 200`` gives ``1e-3``, ``N = 1000`` gives ``1e-3``), at most 0.1.

    A common rule of thumb is ``delta`` well below ``1 / N``: a mechanism that publishes each example
    with probability ``delta`` is ``(0, delta)``-DP yet leaks ``delta * N`` examples on average. Pass a
    smaller ``delta`` when that matters more than a small epsilon.
    """
    if isinstance(train_samples, bool) or not isinstance(train_samples, numbers.Integral) or train_samples < 1:
        raise InputError(f"train_samples must be a positive integer, got {train_samples!r}")
    return 10.0 ** -max(1, math.ceil(math.log10(int(train_samples))))


def fit_private(
    classifier: TorchClassifier,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM,
    delta: float | None = None,
    batch_size: int = 64,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.0,
    accountant: Accountant = "rdp",
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> DPTrainingRecord:
    """Train ``classifier.module`` in place by DP-SGD with cross-entropy; give exactly one of the noise and the budget.

    Args:
        classifier: a torch adapter; its bounds and normalisation apply during training. Its module must
            hold no layer that mixes examples of a batch: BatchNorm is **rejected** (not replaced; use
            GroupNorm or LayerNorm, e.g. ``opacus.validators.ModuleValidator.fix(module)`` before wrapping).
        x: ``(N, *input_shape)`` float inputs in the classifier's bounds. y: ``(N,)`` integer labels.
        epochs: passes over the data (>= 1); each is ``ceil(N / batch_size)`` Poisson-sampled steps.
        noise_multiplier: noise standard deviation over ``max_grad_norm`` (> 0); or
        target_epsilon: the epsilon to reach at ``delta`` after ``epochs`` (> 0); the accountant picks
            the noise multiplier.
        max_grad_norm: the per-example clipping norm, default 1.0.
        delta: the delta of the guarantee, in ``(0, 1)``; default :func:`default_delta` of ``N``.
        batch_size: the expected batch size (default 64); the sampling rate is ``1 / ceil(N / batch_size)``.
        optimizer: ``"sgd"`` (default) or ``"adam"``; the noisy gradient is what they follow.
        lr: default 0.1 for SGD, 1e-3 for Adam; constant. momentum: SGD momentum, default 0.
        accountant: ``"rdp"`` (default) or ``"prv"``; see the module docstring.
        seed: seeds the sampling, the noise and the global torch generator (dropout). The initial
            weights are the module's as given.
        on_epoch: progress callback, see :data:`EpochCallback`.

    Returns:
        A :class:`DPTrainingRecord`; ``record.privacy.epsilon`` is the accountant's epsilon at
        ``record.privacy.delta``. The module is left a plain ``nn.Module`` (no Opacus hooks or
        wrapper) in eval mode, so ``classifier`` and its ``state_tensors()`` are used as after ``fit``.

    Raises:
        InputError: bad settings or data, both or neither of ``noise_multiplier`` and ``target_epsilon``,
            or a module Opacus cannot train privately (BatchNorm).
        CapabilityError: Opacus is not installed.
    """
    if not isinstance(classifier, TorchClassifier):
        raise InputError(f"fit_private trains a TorchClassifier, got {type(classifier).__name__}")
    _check_counts(epochs, batch_size)
    noise, budget = _noise_or_budget(noise_multiplier, target_epsilon)
    clip = _positive("max_grad_norm", max_grad_norm)
    if accountant not in get_args(Accountant):
        raise InputError(f"accountant must be one of {', '.join(get_args(Accountant))}, got {accountant!r}")
    settings = optimiser_settings(optimizer, lr, momentum, 0.0, "constant", batch_size)
    inputs, labels = labelled_tensors(classifier, x, y)
    delta = default_delta(len(inputs)) if delta is None else _delta(delta)
    opacus = _import_opacus()

    seed_everything(seed)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=batch_size,
                        generator=torch.Generator().manual_seed(derive_seed(seed, "dp-sampling")))
    with classifier.trainable() as module:
        module.train()
        try:
            _check_module(opacus, module)
            engine, wrapped, dp_optimiser, private_loader = _make_private(
                opacus, module, build_optimiser(module.parameters(), settings), loader, accountant=accountant,
                noise=noise, budget=budget, delta=delta, epochs=epochs, max_grad_norm=clip,
                noise_seed=derive_seed(seed, "dp-noise"))
        except BaseException:
            module.eval()
            raise
        try:
            history, steps = _train(classifier, wrapped, dp_optimiser, private_loader, epochs, settings.lr, on_epoch)
        finally:
            _unwrap(wrapped, module)
    privacy = PrivacyAccounting(
        accountant=accountant, epsilon=float(engine.get_epsilon(delta)), delta=delta,
        noise_multiplier=float(dp_optimiser.noise_multiplier), max_grad_norm=clip,
        sample_rate=1.0 / len(loader), expected_batch_size=len(inputs) / len(loader), steps=steps,
        target_epsilon=budget, opacus_version=_opacus_version(),
    )
    predictions = predict_in_batches(classifier, inputs.to(classifier.device)).cpu()
    return DPTrainingRecord(
        method="dp-sgd", params=_params(privacy), optimiser=settings, seed=seed, epochs_planned=epochs,
        epochs=epochs, history=history, seconds=sum(epoch.seconds for epoch in history),
        train_samples=len(inputs), train_accuracy=float((predictions == labels).float().mean()), privacy=privacy,
    )


def _make_private(
    opacus: ModuleType,
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    accountant: Accountant,
    noise: float,
    budget: float | None,
    delta: float,
    epochs: int,
    max_grad_norm: float,
    noise_seed: int,
) -> tuple[Any, nn.Module, Any, DataLoader]:
    """Opacus's engine, the wrapped module (per-example gradients), the DP optimiser and the Poisson loader."""
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off; the record says so (secure_rng=False) instead.
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        engine = opacus.PrivacyEngine(accountant=accountant, secure_mode=False)
    device = next(iter(module.parameters()), torch.empty(0)).device
    common: dict[str, Any] = dict(module=module, optimizer=optimiser, data_loader=loader,
                                  max_grad_norm=max_grad_norm,
                                  noise_generator=torch.Generator(device=device).manual_seed(noise_seed))
    try:
        if budget is None:
            wrapped, dp_optimiser, private_loader = engine.make_private(noise_multiplier=noise, **common)
        else:
            with warnings.catch_warnings():
                # The search for the noise tries noise levels so high that RDP's best order is its largest.
                warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
                wrapped, dp_optimiser, private_loader = engine.make_private_with_epsilon(
                    target_epsilon=budget, target_delta=delta, epochs=epochs, **common)
    except ValueError as exc:  # e.g. a budget that no noise level reaches in these epochs
        raise InputError(f"Opacus refused the DP-SGD settings: {exc}") from exc
    return engine, wrapped, dp_optimiser, private_loader


def _train(
    classifier: TorchClassifier,
    wrapped: nn.Module,
    dp_optimiser: Any,
    loader: DataLoader,
    epochs: int,
    lr: float,
    on_epoch: EpochCallback | None,
) -> tuple[list[EpochRecord], int]:
    """Every epoch of the private run: the epoch records and the number of steps taken."""
    history: list[EpochRecord] = []
    steps = 0
    with warnings.catch_warnings():
        # torch warns when Opacus's backward hooks fire on a first layer whose input needs no gradient.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            loss, epoch_steps = _train_epoch(classifier, wrapped, dp_optimiser, loader, epoch)
            steps += epoch_steps
            history.append(EpochRecord(epoch=epoch, loss=loss, lr=lr, seconds=time.perf_counter() - started))
            if on_epoch is not None:
                on_epoch(epoch, epochs, history[-1])
    return history, steps


def _train_epoch(
    classifier: TorchClassifier, wrapped: nn.Module, dp_optimiser: Any, loader: DataLoader, epoch: int
) -> tuple[float, int]:
    """One pass of Poisson-sampled steps; returns the mean loss over the examples drawn and the step count."""
    device = classifier.device
    total, drawn, steps = 0.0, 0, 0
    wrapped.train()
    for batch_x, batch_y in loader:
        batch_x, batch_y = batch_x.to(device), batch_y.to(device)
        # An empty batch still takes its step: the update is pure noise, as the accountant assumes.
        loss = F.cross_entropy(wrapped(classifier.normalise(batch_x)), batch_y)
        dp_optimiser.zero_grad()
        loss.backward()
        dp_optimiser.step()
        steps += 1
        if len(batch_y):
            value = float(loss.detach())
            if not math.isfinite(value):
                raise InputError(f"the training loss became {value} at epoch {epoch}, step {steps}; lower the "
                                 "learning rate")
            total, drawn = total + value * len(batch_y), drawn + len(batch_y)
    return (total / drawn if drawn else float("nan")), steps


def _unwrap(wrapped: Any, module: nn.Module) -> None:
    """Leave ``module`` as a plain ``nn.Module``: hooks removed, per-sample gradients and gradients dropped."""
    wrapped.to_standard_module()
    module.eval()
    for parameter in module.parameters():
        parameter.grad = None
        for attribute in ("grad_sample", "summed_grad", "_forward_counter"):
            if hasattr(parameter, attribute):
                delattr(parameter, attribute)


def _params(privacy: PrivacyAccounting) -> dict[str, Any]:
    return {"noise_multiplier": privacy.noise_multiplier, "max_grad_norm": privacy.max_grad_norm,
            "target_epsilon": privacy.target_epsilon, "delta": privacy.delta, "accountant": privacy.accountant}


# --- checks -------------------------------------------------------------------------------------------


def _import_opacus() -> ModuleType:
    try:
        import opacus
        import opacus.validators
    except ImportError as exc:
        raise CapabilityError(f"differentially private training needs Opacus, which is not installed: "
                              f"{_INSTALL_HINT}") from exc
    return opacus


def _opacus_version() -> str:
    try:
        return version("opacus")
    except PackageNotFoundError:
        return "unknown"


def _check_module(opacus: ModuleType, module: nn.Module) -> None:
    """Refuse a module Opacus cannot compute per-example gradients for (BatchNorm above all).

    Run on the module in train mode with gradients on: Opacus checks only trainable layers.
    """
    batch_norm = [name or "<root>" for name, layer in module.named_modules() if isinstance(layer, _BATCH_NORMS)]
    if batch_norm:
        raise InputError(f"this model cannot be trained with differential privacy: its BatchNorm layers "
                         f"({', '.join(batch_norm)}) normalise each example with statistics of the whole batch, so "
                         "one example's influence cannot be clipped. Build the model with GroupNorm or LayerNorm "
                         "instead (opacus.validators.ModuleValidator.fix(module) swaps BatchNorm for GroupNorm) "
                         "and train it from scratch")
    problems = opacus.validators.ModuleValidator.validate(module, strict=False)
    if problems:
        details = "; ".join(str(problem) for problem in problems)
        raise InputError(f"this model cannot be trained with differential privacy; Opacus says: {details}")


def _check_counts(epochs: int, batch_size: int) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")


def _noise_or_budget(noise_multiplier: float | None, target_epsilon: float | None) -> tuple[float, float | None]:
    """``(noise_multiplier, None)`` or ``(nan, target_epsilon)``: exactly one must be given."""
    if (noise_multiplier is None) == (target_epsilon is None):
        given = "both" if noise_multiplier is not None else "neither"
        raise InputError(f"give exactly one of noise_multiplier (the noise to add) and target_epsilon (the budget "
                         f"to reach; the noise is then calibrated to it), got {given}")
    if noise_multiplier is not None:
        return _positive("noise_multiplier", noise_multiplier), None
    return math.nan, _positive("target_epsilon", target_epsilon)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _delta(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise InputError(f"delta must be in (0, 1), well below 1 / (training samples); got {value!r}")
    return float(value)
