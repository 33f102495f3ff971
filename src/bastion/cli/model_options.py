"""Options shared by every command that loads a model and data."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.options import floats, ints, pair
from bastion.models.loading import LoadedModel, load_classifier

ModelSpec = Annotated[str, typer.Option(
    "--model", "-m",
    help="pkg.module:factory (with --weights), a TorchScript file, an ONNX file or a .skops file.",
)]
FactorySpec = Annotated[str, typer.Option(
    "--model", "-m", help="pkg.module:factory returning a torch nn.Module (e.g. bastion.models.zoo:digits_cnn).")]
WeightsFile = Annotated[str | None, typer.Option(
    "--weights", "-w", help="safetensors state dict for a factory model. Pickles are refused.")]
DataSpec = Annotated[str, typer.Option(
    "--data", "-d",
    help="A .npz with x and y, a folder of images per class, a CSV with a label column, "
    "or a built-in: digits, digits:train, fashion-mnist, fashion-mnist:train.",
)]
LabelColumn = Annotated[str, typer.Option(help="Label column of a CSV dataset.")]
InputShape = Annotated[str | None, typer.Option(
    help="Per-sample input shape, e.g. 1,28,28, when the model does not say.")]
NumClasses = Annotated[int | None, typer.Option(help="Number of classes, when the model does not say.")]
Bounds = Annotated[str, typer.Option(help="Valid input range 'low,high'.")]
Mean = Annotated[str | None, typer.Option(help="Per-channel mean the model expects, applied inside the adapter.")]
Std = Annotated[str | None, typer.Option(help="Per-channel std the model expects, applied inside the adapter.")]


def load_model_from_options(
    model: str, weights: str | None, input_shape: str | None, num_classes: int | None, bounds: str,
    mean: str | None, std: str | None,
) -> LoadedModel:
    """Load a classifier from the CLI's strings."""
    return load_classifier(
        model,
        weights=weights,
        input_shape=ints(input_shape, "--input-shape") if input_shape else None,
        num_classes=num_classes,
        bounds=pair(bounds, "--bounds"),
        mean=floats(mean, "--mean") if mean else None,
        std=floats(std, "--std") if std else None,
    )
