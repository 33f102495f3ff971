"""``bastion train``: train a torch model on a dataset (plainly, with PGD adversarial training, or DP-SGD)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.console import console, progress_bars, user_errors
from bastion.cli.model_options import (
    Bounds,
    DataSpec,
    FactorySpec,
    InputShape,
    LabelColumn,
    Mean,
    NumClasses,
    SchemaFile,
    Std,
    WeightsFile,
    load_data_from_options,
    load_model_from_options,
)
from bastion.core.errors import InputError
from bastion.core.literals import Norm


def train_command(
    model: FactorySpec,
    data: DataSpec,
    out: Annotated[Path, typer.Option(help="Where to write the trained weights (.safetensors).")],
    weights: WeightsFile = None,
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    adversarial_eps: Annotated[float | None, typer.Option(help="Train on PGD examples of this budget "
                                                          "(PGD adversarial training).")] = None,
    norm: Annotated[Norm, typer.Option(help="Norm of the adversarial training budget.")] = "linf",
    limit: Annotated[int | None, typer.Option(help="Train on the first N samples only.")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="Write a checkpoint (safetensors + JSON) here after "
                                                        "every epoch.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --checkpoint-dir.")] = False,
    dp_noise: Annotated[float | None, typer.Option(help="Train by DP-SGD (Opacus; pip install 'bastion\\[privacy]') "
                                                   "with this noise multiplier.", show_default=False)] = None,
    dp_epsilon: Annotated[float | None, typer.Option(help="Train by DP-SGD with the noise that reaches this epsilon "
                                                     "after --epochs (instead of --dp-noise).",
                                                     show_default=False)] = None,
    dp_clip: Annotated[float, typer.Option(help="DP-SGD: per-example gradient norm clip.")] = 1.0,
    dp_delta: Annotated[float | None, typer.Option(help="DP-SGD: the guarantee's delta (default 1/N rounded down "
                                                   "to a power of ten).", show_default=False)] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Train a factory model (pkg.module:factory) and save its weights as safetensors."""
    from safetensors.torch import save_file

    from bastion.core.seeding import seed_everything
    from bastion.core.threat import ThreatModel
    from bastion.defenses.training import train_classifier
    from bastion.models.torch_adapter import TorchClassifier

    with user_errors():
        private = dp_noise is not None or dp_epsilon is not None
        check_files(out, weights, checkpoint_dir, resume)
        check_numbers(epochs, batch_size, lr, adversarial_eps)
        if private:
            check_privacy(dp_noise, dp_epsilon, dp_clip, dp_delta, adversarial_eps is not None,
                          checkpoint_dir is not None or resume)
        seed_everything(seed)  # before the factory runs: its initialisation draws from torch's global generator
        loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
        classifier = loaded.classifier
        if not isinstance(classifier, TorchClassifier) or classifier.kind != "torch":
            raise InputError("bastion train needs a torch factory model (pkg.module:factory)")
        dataset = load_data_from_options(data, label_column, schema, limit)
        threat = None if adversarial_eps is None else ThreatModel(norm=norm, eps=adversarial_eps,
                                                                  bounds=classifier.bounds)

        with progress_bars() as progress:
            if private:
                from bastion.defenses.training import fit_private

                record = fit_private(
                    classifier, dataset.x, dataset.y, epochs=epochs, noise_multiplier=dp_noise,
                    target_epsilon=dp_epsilon, max_grad_norm=dp_clip, delta=dp_delta, batch_size=batch_size,
                    optimizer="adam", lr=lr, seed=seed,
                    on_epoch=lambda epoch, total, _record: progress("epochs", epoch, total))
            else:
                record = train_classifier(
                    classifier, dataset.x, dataset.y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                    adversarial=threat, checkpoint_dir=checkpoint_dir, resume=resume,
                    on_epoch=lambda epoch, total, _loss: progress("epochs", epoch, total))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(classifier.state_tensors(), str(out))
        accounting = out.with_suffix(".privacy.json")
        if not private and accounting.exists():
            accounting.unlink()  # it described the weights just overwritten; a privacy scan would read it
            console.print(f"removed {accounting}: the new weights are not DP-trained")
        if private:
            accounting.write_text(record.model_dump_json(indent=2))
            privacy = record.privacy  # type: ignore[attr-defined]
            console.print(f"DP-SGD: epsilon {privacy.epsilon:.2f} at delta {privacy.delta:g} ({privacy.accountant} "
                          f"accountant, noise {privacy.noise_multiplier:.3g}, clip {privacy.max_grad_norm:g}, "
                          f"{privacy.steps} steps); record: {accounting}")
    resumed = "" if record.resumed_from is None else f" (resumed after epoch {record.resumed_from})"
    console.print(f"trained {record.epochs} epoch(s){resumed}; final loss {record.losses[-1]:.4f}; "
                  f"training accuracy {record.train_accuracy:.1%}; weights: {out}")


def check_files(out: Path, weights: str | None, checkpoint_dir: Path | None, resume: bool) -> None:
    """Refuse, before any work, an ``--out`` that is no safetensors file or would overwrite ``--weights``, and
    checkpoint settings that cannot work (``InputError`` naming the flag to fix)."""
    from bastion.defenses.training.checkpoint import has_checkpoint

    if out.suffix != ".safetensors":
        raise InputError(f"--out must end in .safetensors, got {out}")
    if weights and Path(weights).expanduser().resolve() == out.expanduser().resolve():
        raise InputError(f"--weights {weights} is also --out, so training would overwrite the weights it starts "
                         "from: choose another --out, or copy the weights elsewhere first")
    if checkpoint_dir is None:
        if resume:
            raise InputError("--resume continues from a checkpoint: pass the --checkpoint-dir that holds it")
        return
    folder = checkpoint_dir.expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--checkpoint-dir {folder} is a file; give a folder")
    if has_checkpoint(folder) and not resume:
        raise InputError(f"--checkpoint-dir {folder} already holds a training checkpoint: pass --resume to "
                         "continue it, or choose an empty --checkpoint-dir")


def check_numbers(epochs: int, batch_size: int, lr: float, adversarial_eps: float | None) -> None:
    """Refuse counts below 1 and budgets or rates that are not finite and positive, naming the flag."""
    for flag, count in (("--epochs", epochs), ("--batch-size", batch_size)):
        if count < 1:
            raise InputError(f"{flag} must be >= 1, got {count}")
    _positive("--lr", lr)
    if adversarial_eps is not None:
        _positive("--adversarial-eps", adversarial_eps, " (leave it out to train without attacks)")


def check_privacy(noise: float | None, epsilon: float | None, clip: float, delta: float | None,
                  adversarial: bool, checkpoints: bool) -> None:
    """Refuse DP-SGD settings that cannot work, naming the ``--dp-*`` flag to fix."""
    if adversarial or checkpoints:
        raise InputError("DP-SGD (--dp-noise/--dp-epsilon) cannot be combined with --adversarial-eps or "
                         "checkpoints; drop one")
    if noise is not None and epsilon is not None:
        raise InputError("give --dp-noise (the noise to add) or --dp-epsilon (the budget to reach), not both")
    for flag, value in (("--dp-noise", noise), ("--dp-epsilon", epsilon), ("--dp-clip", clip)):
        if value is not None:
            _positive(flag, value)
    if delta is not None and not 0 < delta < 1:
        raise InputError(f"--dp-delta must be in (0, 1), well below 1 / (training samples); got {delta}")


def _positive(flag: str, value: float, hint: str = "") -> None:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{flag} must be a finite number > 0{hint}, got {value}")
