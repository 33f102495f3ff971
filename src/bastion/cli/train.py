"""``bastion train``: train a torch model on a dataset (plainly, with PGD adversarial training, or DP-SGD)."""

from __future__ import annotations

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

    from bastion.core.threat import ThreatModel
    from bastion.defenses.training import train_classifier
    from bastion.models.torch_adapter import TorchClassifier

    with user_errors():
        if out.suffix != ".safetensors":
            raise InputError(f"--out must end in .safetensors, got {out}")
        loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
        classifier = loaded.classifier
        if not isinstance(classifier, TorchClassifier) or classifier.kind != "torch":
            raise InputError("bastion train needs a torch factory model (pkg.module:factory)")
        dataset = load_data_from_options(data, label_column, schema, limit)
        private = dp_noise is not None or dp_epsilon is not None
        if private and (adversarial_eps or checkpoint_dir or resume):
            raise InputError("DP-SGD (--dp-noise/--dp-epsilon) cannot be combined with --adversarial-eps or "
                             "checkpoints; drop one")
        threat = ThreatModel(norm=norm, eps=adversarial_eps, bounds=classifier.bounds) if adversarial_eps else None

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
