"""Options shared by every command that loads a model and data.

Imported when the CLI starts, so it imports nothing heavy: the model and data loaders (torch, NumPy)
are imported by the functions that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.options import floats, ints, pair

if TYPE_CHECKING:
    from bastion.data.sources import Dataset
    from bastion.models.loading import LoadedModel

ModelSpec = Annotated[str, typer.Option(
    "--model", "-m",
    help="pkg.module:factory (with --weights), a TorchScript file, an ONNX file, a .skops file or an ensemble "
         "manifest (.yaml: members to average).",
)]
FactorySpec = Annotated[str, typer.Option(
    "--model", "-m", help="pkg.module:factory returning a torch nn.Module (e.g. bastion.models.zoo:digits_cnn).")]
WeightsFile = Annotated[str | None, typer.Option(
    "--weights", "-w", help="safetensors state dict for a factory model. Pickles are refused.")]
DataSpec = Annotated[str, typer.Option(
    "--data", "-d",
    help="A .npz with x and y, a folder of images per class, a CSV or Parquet table with a label column "
    "(numeric feature columns, or any columns described by --schema), or a built-in: digits, digits:train, "
    "fashion-mnist, fashion-mnist:train (a folder named like one: ./digits).",
)]
LabelColumn = Annotated[str, typer.Option(
    help="Label column of a CSV/Parquet dataset ('label' gives way to the --schema's label column).")]
SchemaFile = Annotated[Path | None, typer.Option(
    "--schema",
    help="YAML/JSON schema of a CSV/Parquet dataset: column types, ranges and allowed categories, checked "
    "with every bad row reported, and how the columns become features.", show_default=False,
)]
InputShape = Annotated[str | None, typer.Option(
    help="Per-sample input shape, e.g. 1,28,28, when the model does not say.")]
NumClasses = Annotated[int | None, typer.Option(help="Number of classes, when the model does not say.")]
Bounds = Annotated[str, typer.Option(help="Valid input range 'low,high'.")]
Mean = Annotated[str | None, typer.Option(help="Per-channel mean the model expects, applied inside the adapter.")]
Std = Annotated[str | None, typer.Option(help="Per-channel std the model expects, applied inside the adapter.")]


def load_model_from_options(
    model: str, weights: str | None, input_shape: str | None, num_classes: int | None, bounds: str,
    mean: str | None, std: str | None, **remote_options: object,
) -> LoadedModel:
    """Load a classifier from the CLI's strings; ``remote_options`` (``api_key``, ``budget``, ``journal``) go to
    ``load_classifier`` for an endpoint."""
    from bastion.models.loading import load_classifier

    return load_classifier(
        model,
        weights=weights,
        input_shape=ints(input_shape, "--input-shape") if input_shape else None,
        num_classes=num_classes,
        bounds=bounds_option(bounds),
        mean=floats(mean, "--mean", example="0.5 or 0.485,0.456,0.406") if mean else None,
        std=floats(std, "--std", example="0.5 or 0.229,0.224,0.225") if std else None,
        **remote_options,
    )


def bounds_option(bounds: str) -> tuple[float, float]:
    """``--bounds`` ``"LOW,HIGH"`` as numbers, checked (``InputError`` unless LOW < HIGH)."""
    from bastion.core.errors import InputError
    from bastion.core.threat import FLOAT32_MAX

    low, high = pair(bounds, "--bounds")
    if not low < high:
        raise InputError(f"--bounds must be LOW,HIGH with LOW below HIGH, got {bounds}")
    if max(abs(low), abs(high)) > FLOAT32_MAX:
        raise InputError(f"--bounds must lie within float32's range (about ±3.4e38), the inputs' type; got {bounds}")
    return low, high


def warn_if_untrained(model: str, weights: str | None) -> None:
    """Warn on stderr when ``model`` is a factory given no weights: its figures would be a random network's."""
    from bastion.cli.console import errors
    from bastion.models.loading import is_factory_spec

    if weights is None and is_factory_spec(model) and not Path(model).exists():
        errors.print("warning: a factory model without --weights starts from random weights: its figures mean "
                     "nothing (pass --weights FILE.safetensors)")


def load_data_from_options(data: str, label_column: str, schema: Path | None, limit: int | None = None) -> Dataset:
    """Load ``--data`` (its first ``limit`` samples; ``None``: all), a table checked against ``--schema``.

    Raises:
        InputError: a missing or invalid schema file, a schema given for data that is not a CSV/Parquet
            table, or data that fails to load (see :func:`bastion.data.sources.load_dataset`).
    """
    from bastion.core.errors import InputError
    from bastion.data.schema import load_schema
    from bastion.data.sources import load_dataset

    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive number of samples, got {limit}")
    table_schema = load_schema(schema) if schema is not None else None
    return load_dataset(data, label_column=label_column, limit=limit, schema=table_schema)
