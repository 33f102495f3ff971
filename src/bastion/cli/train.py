"""``bastion train``: train a torch model on a dataset (plainly or with PGD adversarial training)."""

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
        threat = ThreatModel(norm=norm, eps=adversarial_eps, bounds=classifier.bounds) if adversarial_eps else None

        with progress_bars() as progress:
            record = train_classifier(
                classifier, dataset.x, dataset.y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                adversarial=threat, checkpoint_dir=checkpoint_dir, resume=resume,
                on_epoch=lambda epoch, total, _loss: progress("epochs", epoch, total))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(classifier.state_tensors(), str(out))
    resumed = "" if record.resumed_from is None else f" (resumed after epoch {record.resumed_from})"
    console.print(f"trained {record.epochs} epoch(s){resumed}; final loss {record.losses[-1]:.4f}; "
                  f"training accuracy {record.train_accuracy:.1%}; weights: {out}")
