"""The training loop: any :class:`Objective`, an optimiser and schedule, validation, early stop, checkpoints.

``fit`` owns shuffling, the optimiser and its learning-rate schedule, validation after each epoch,
early stopping on robust accuracy, checkpoints and resuming; the objective only turns a batch into
a loss. A run resumed from its last checkpoint ends with bitwise the same weights as an
uninterrupted run with the same seed (same device and thread count).

Randomness: shuffling draws from a generator seeded with ``seed``; objectives get a per-step seed
and the samples' positions in ``x`` as keys for keyed randomness (random starts); the global torch
generator (dropout) is seeded by ``seed_everything(seed)``. The torch generators' states are
checkpointed; Python's and NumPy's are seeded but not saved (nothing in the loop draws from them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.core.seeding import derive_seed, seed_everything
from bastion.core.threat import ThreatModel
from bastion.defenses.training import checkpoint as ckpt
from bastion.defenses.training.averaging import WeightAverage, check_decay
from bastion.defenses.training.data import ArrayLike, batches, data_digest, labelled_tensors
from bastion.defenses.training.objective import Objective
from bastion.defenses.training.optim import build_optimiser, learning_rate, optimiser_settings, set_learning_rate
from bastion.defenses.training.pgd_at import PGDAdversarial
from bastion.defenses.training.plain import CrossEntropy
from bastion.defenses.training.record import EpochRecord, OptimiserSettings, TrainingRecord
from bastion.defenses.training.validation import EarlyStop, Scores, Validator
from bastion.models.base import predict_in_batches
from bastion.models.torch_adapter import TorchClassifier

logger = logging.getLogger(__name__)

#: ``on_epoch(epoch, epochs, record)`` after each epoch (1-based), once its checkpoint is written.
EpochCallback = Callable[[int, int, EpochRecord], None]
#: ``on_step(step, total_steps, loss)`` after each optimiser step (``step`` is 1-based, over all epochs).
StepCallback = Callable[[int, int, float], None]


@dataclass
class _Run:
    """What stays fixed while the epochs run."""

    classifier: TorchClassifier
    module: nn.Module
    objective: Objective
    optimiser: torch.optim.Optimizer
    settings: OptimiserSettings
    inputs: torch.Tensor
    labels: torch.Tensor
    generator: torch.Generator
    seed: int
    total_steps: int
    on_step: StepCallback | None
    average: WeightAverage | None = None


def fit(
    classifier: TorchClassifier,
    x: ArrayLike,
    y: ArrayLike,
    objective: Objective,
    *,
    epochs: int,
    batch_size: int = 128,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    seed: int = 0,
    validation: tuple[ArrayLike, ArrayLike] | None = None,
    early_stop: EarlyStop | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    weight_average: float | None = None,
) -> TrainingRecord:
    """Train ``classifier.module`` in place to minimise ``objective``.

    Args:
        classifier: a torch adapter; its bounds and normalisation apply during training.
        x: ``(N, *input_shape)`` float inputs in the classifier's bounds. y: ``(N,)`` integer labels.
        objective: what to minimise per batch (:class:`CrossEntropy`, :class:`PGDAdversarial`, ...).
        epochs: passes over the data (>= 1).
        batch_size: samples per step, default 128; the last batch of an epoch may be smaller.
        optimizer: ``"sgd"`` (default; momentum, not Nesterov) or ``"adam"``.
        lr: base learning rate; default 0.1 for SGD, 1e-3 for Adam.
        momentum: SGD momentum, default 0.9 (ignored by Adam). weight_decay: L2 penalty, default 0.
        schedule: ``"constant"`` (default), ``"cosine"`` (to zero), ``"piecewise"`` (x0.1 at 50% and
            75% of training) or ``"one-cycle"`` (linear up to ``lr`` at 40%, down to zero), per step.
        seed: seeds shuffling, the objective's randomness and the validation attack.
        validation: ``(x_val, y_val)``, shaped like ``x`` and ``y``; clean accuracy is recorded each epoch.
        early_stop: keep the epoch with the best robust validation accuracy and stop after
            ``patience`` epochs without improvement (needs ``validation``); see :mod:`.validation`.
        checkpoint_dir: write a checkpoint there after every epoch (see :mod:`.checkpoint`).
        resume: continue from the checkpoint in ``checkpoint_dir`` (a fresh start when it holds none);
            the checkpoint must come from the same model, data, objective and settings. Only the early
            stop's patience may change: a run that stopped early goes on when the new patience allows.
        on_epoch, on_step: progress callbacks (see :data:`EpochCallback`, :data:`StepCallback`).
        weight_average: keep an exponential moving average of the weights with this decay in (0, 1),
            e.g. 0.999 (see :mod:`.averaging`); validation, the early stop and the returned model then use
            the averaged weights. Default ``None``: no average.

    Returns:
        The :class:`TrainingRecord`. The module is left in eval mode, holding the best epoch's
        weights when ``early_stop`` is set and the last epoch's otherwise (averaged weights when
        ``weight_average`` is set).

    Raises:
        InputError: bad settings or data, or a checkpoint that cannot be resumed.
    """
    _check_run(classifier, objective, epochs, batch_size)
    decay = None if weight_average is None else check_decay(weight_average)
    settings = optimiser_settings(optimizer, lr, momentum, weight_decay, schedule, batch_size)
    inputs, labels = labelled_tensors(classifier, x, y)
    validator = _validator(classifier, validation, early_stop, seed)
    folder = _checkpoint_folder(checkpoint_dir, resume)
    config = _run_config(classifier, objective, settings, epochs, seed, inputs, labels, validator)
    if decay is not None:  # only when set: checkpoints of runs without an average stay resumable
        config["weight_average"] = decay
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    with classifier.trainable() as module:
        optimiser = build_optimiser(module.parameters(), settings)
        steps_per_epoch = math.ceil(len(inputs) / batch_size)
        run = _Run(classifier, module, objective, optimiser, settings, inputs, labels, generator, seed,
                   epochs * steps_per_epoch, on_step, None if decay is None else WeightAverage(module, decay))
        state, best_weights, resumed_from = _start(run, folder, resume, config)
        if early_stop is not None and state.stopped_early and state.best_epoch is not None:
            state.stopped_early = state.epoch - state.best_epoch >= early_stop.patience  # resumed with more patience
        try:
            while state.epoch < epochs and not state.stopped_early:
                best_weights = _run_epoch(run, state, validator, best_weights)
                if folder is not None:
                    _save(run, folder, config, state, best_weights)
                if on_epoch is not None:
                    on_epoch(state.epoch, epochs, state.history[-1])
        finally:
            module.eval()
        if early_stop is not None and best_weights is not None:
            module.load_state_dict(best_weights)
        elif run.average is not None:
            module.load_state_dict(run.average.tensors)
    return _record(run, state, epochs, early_stop, validator, resumed_from)


def _check_run(classifier: TorchClassifier, objective: Objective, epochs: int, batch_size: int) -> None:
    if not isinstance(classifier, TorchClassifier):
        raise InputError(f"fit trains a TorchClassifier (a torch module behind bastion's adapter), "
                         f"got {type(classifier).__name__}")
    if not isinstance(objective, Objective):
        raise InputError(f"objective must implement Objective (name, loss, params), got {type(objective).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")


def _validator(
    classifier: TorchClassifier,
    validation: tuple[ArrayLike, ArrayLike] | None,
    early_stop: EarlyStop | None,
    seed: int,
) -> Validator | None:
    if early_stop is not None and not isinstance(early_stop, EarlyStop):
        raise InputError(f"early_stop must be an EarlyStop, got {type(early_stop).__name__}")
    if validation is None:
        if early_stop is not None:
            raise InputError("early_stop needs validation=(x_val, y_val) to measure robust accuracy on")
        return None
    if not isinstance(validation, tuple | list) or len(validation) != 2:
        raise InputError("validation must be a pair (x_val, y_val)")
    x_val, y_val = labelled_tensors(classifier, validation[0], validation[1], name="validation data")
    validator = Validator(x_val, y_val, early_stop, seed)
    validator.check(classifier)
    return validator


def _checkpoint_folder(checkpoint_dir: str | Path | None, resume: bool) -> Path | None:
    if checkpoint_dir is None:
        if resume:
            raise InputError("resume=True needs the checkpoint_dir to resume from")
        return None
    folder = Path(checkpoint_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"checkpoint_dir {folder} is a file; give a folder")
    if ckpt.has_checkpoint(folder) and not resume:
        raise InputError(f"{folder} already holds a training checkpoint; pass resume=True to continue it, "
                         "or choose an empty checkpoint_dir")
    return folder


def _run_config(
    classifier: TorchClassifier,
    objective: Objective,
    settings: OptimiserSettings,
    epochs: int,
    seed: int,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    validator: Validator | None,
) -> dict[str, Any]:
    """Everything a checkpoint must agree with to be resumed, as plain JSON."""
    module = classifier.module
    config = {
        "method": objective.name,
        "params": objective.params(),
        "optimiser": settings.model_dump(),
        "epochs": epochs,
        "seed": seed,
        "model": {"class": type(module).__name__, "input_shape": classifier.input_shape,
                  "num_classes": classifier.num_classes, "bounds": classifier.bounds,
                  "state": {name: [list(t.shape), str(t.dtype)] for name, t in module.state_dict().items()}},
        "data": {"count": len(inputs), "sha256": data_digest(inputs, labels)},
        "validation": None if validator is None else {
            "count": len(validator.x), "sha256": data_digest(validator.x, validator.y),
            "early_stop": None if validator.early_stop is None else validator.early_stop.settings().model_dump()},
    }
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        raise InputError(f"objective {objective.name!r} params() must be JSON-serialisable: {exc}") from exc


# --- starting and resuming --------------------------------------------------------------------


def _start(
    run: _Run, folder: Path | None, resume: bool, config: dict[str, Any]
) -> tuple[ckpt.LoopState, dict[str, torch.Tensor] | None, int | None]:
    """Fresh loop state, or the state of the checkpoint in ``folder`` applied to the run."""
    if folder is None or not resume:
        return ckpt.LoopState(), None, None
    if not ckpt.has_checkpoint(folder):
        logger.warning("no checkpoint in %s; training from the start", folder)
        return ckpt.LoopState(), None, None
    checkpoint = ckpt.load_checkpoint(folder, config)
    try:
        run.module.load_state_dict(checkpoint.prefixed("model"))
        run.optimiser.load_state_dict(checkpoint.optimizer_state)
        run.generator.set_state(checkpoint.tensors["rng.shuffle"])
        if run.average is not None:
            run.average.load(checkpoint.prefixed("average"))
        torch.set_rng_state(checkpoint.tensors["rng.torch"])
        cuda_states = [checkpoint.tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count())
                       if f"rng.cuda.{i}" in checkpoint.tensors]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"the checkpoint in {folder} is corrupt: {exc}. Delete the folder to start afresh") from exc
    best = checkpoint.prefixed("best") or None
    logger.info("resuming from epoch %d in %s", checkpoint.loop.epoch, folder)
    return checkpoint.loop, best, checkpoint.loop.epoch


def _save(
    run: _Run, folder: Path, config: dict[str, Any], state: ckpt.LoopState, best: dict[str, torch.Tensor] | None
) -> None:
    optimizer_tensors, structure = ckpt.flatten_optimizer(run.optimiser.state_dict())
    tensors = {f"model.{name}": t for name, t in run.module.state_dict().items()}
    tensors |= {f"best.{name}": t for name, t in (best or {}).items()}
    tensors |= {f"average.{name}": t for name, t in (run.average.tensors if run.average else {}).items()}
    tensors |= optimizer_tensors
    tensors["rng.shuffle"] = run.generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors |= {f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    ckpt.save_checkpoint(folder, config=config, loop=state, tensors=tensors, optimizer_structure=structure)


# --- one epoch --------------------------------------------------------------------------------


def _run_epoch(
    run: _Run, state: ckpt.LoopState, validator: Validator | None, best: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor] | None:
    """Train one epoch, validate, update the best weights and the stop flag; returns the best weights."""
    started = time.perf_counter()
    loss, lr = _train_epoch(run, state)
    state.epoch += 1
    # With a weight average, the averaged weights are the model: they are validated and kept.
    with run.average.applied(run.module) if run.average is not None else contextlib.nullcontext():
        scores = None if validator is None else validator.score(run.classifier, run.module)
        if scores is not None and validator is not None and validator.early_stop is not None:
            best = _select(run.module, state, scores, best, validator.early_stop.patience)
    state.history.append(EpochRecord(
        epoch=state.epoch, loss=loss, lr=lr, seconds=time.perf_counter() - started,
        val_clean=None if scores is None else scores.clean, val_robust=None if scores is None else scores.robust))
    logger.info("epoch %d: loss %.4f, lr %.3g, validation %s", state.epoch, loss, lr, scores)
    return best


def _train_epoch(run: _Run, state: ckpt.LoopState) -> tuple[float, float]:
    """One pass over the shuffled data; returns the mean loss and the last step's learning rate."""
    order = torch.randperm(len(run.inputs), generator=run.generator)
    device = run.classifier.device
    total, lr = 0.0, run.settings.lr
    for index in batches(order, run.settings.batch_size):
        lr = learning_rate(run.settings, state.step, run.total_steps)
        set_learning_rate(run.optimiser, lr)
        loss = run.objective.loss(
            run.classifier, run.module, run.inputs[index].to(device), run.labels[index].to(device),
            progress=state.step / run.total_steps, seed=derive_seed(run.seed, "step", state.step),
            keys=index.to(device),
        )
        value = _checked_loss(loss, run.objective, state)
        run.optimiser.zero_grad()
        loss.backward()
        run.optimiser.step()
        if run.average is not None:
            run.average.update(run.module, state.step)
        state.step += 1
        total += value * len(index)
        if run.on_step is not None:
            run.on_step(state.step, run.total_steps, value)
    return total / len(run.inputs), lr


def _checked_loss(loss: torch.Tensor, objective: Objective, state: ckpt.LoopState) -> float:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise InputError(f"objective {objective.name!r} must return a scalar tensor with gradients, got "
                         f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise InputError(f"the training loss became {value} at epoch {state.epoch + 1}, step {state.step + 1}; "
                         "lower the learning rate")
    return value


def _select(
    module: nn.Module, state: ckpt.LoopState, scores: Scores, best: dict[str, torch.Tensor] | None, patience: int
) -> dict[str, torch.Tensor] | None:
    """Keep the weights when this epoch beats the best so far; set the stop flag after ``patience`` epochs."""
    previous = None if state.best_clean is None else Scores(state.best_clean, state.best_robust)
    if best is None or scores.beats(previous):
        state.best_epoch, state.best_clean, state.best_robust = state.epoch, scores.clean, scores.robust
        best = ckpt.state_snapshot(module)
    elif state.best_epoch is not None and state.epoch - state.best_epoch >= patience:
        state.stopped_early = True
    return best


def _record(
    run: _Run,
    state: ckpt.LoopState,
    epochs: int,
    early_stop: EarlyStop | None,
    validator: Validator | None,
    resumed_from: int | None,
) -> TrainingRecord:
    predictions = predict_in_batches(run.classifier, run.inputs.to(run.classifier.device)).cpu()
    return TrainingRecord(
        method=run.objective.name, params=run.objective.params(), optimiser=run.settings, seed=run.seed,
        epochs_planned=epochs, epochs=state.epoch, history=state.history,
        best_epoch=state.best_epoch if early_stop is not None else None,
        early_stop=None if early_stop is None else early_stop.settings(),
        stopped_early=state.stopped_early, resumed_from=resumed_from,
        seconds=sum(epoch.seconds for epoch in state.history), train_samples=len(run.inputs),
        validation_samples=None if validator is None else len(validator.x),
        train_accuracy=float((predictions == run.labels).float().mean()),
        weight_average=None if run.average is None else run.average.decay,
    )


# --- the original entry point -----------------------------------------------------------------


def train_classifier(
    classifier: TorchClassifier,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    adversarial: ThreatModel | None = None,
    attack_steps: int = 7,
    on_epoch: Callable[[int, int, float], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> TrainingRecord:
    """Train with Adam at a constant rate: cross-entropy, or PGD adversarial training when ``adversarial`` is set.

    A shortcut for :func:`fit` with :class:`CrossEntropy` or :class:`PGDAdversarial` (``attack_steps``
    steps of ``2.5 * eps / steps`` from a random start).

    Args:
        classifier: a torch adapter; its bounds and normalisation apply during training too.
        x: ``(N, *input_shape)`` float32 in bounds. y: ``(N,)`` int labels.
        epochs: default 10. batch_size: default 64. lr: Adam's rate, default 1e-3.
        adversarial: the threat model to train against; ``None`` (default) trains plainly.
        on_epoch: called as ``on_epoch(epoch, epochs, mean_loss)`` after each epoch (progress bars).
        checkpoint_dir, resume: as for :func:`fit`.
    """
    objective: Objective = CrossEntropy() if adversarial is None else PGDAdversarial(adversarial, steps=attack_steps)
    callback = None if on_epoch is None else (lambda epoch, total, record: on_epoch(epoch, total, record.loss))
    return fit(classifier, x, y, objective, epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr,
               weight_decay=0.0, schedule="constant", seed=seed, checkpoint_dir=checkpoint_dir, resume=resume,
               on_epoch=callback)
