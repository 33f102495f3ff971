"""``bastion harden``: adversarial or certified training, with scans before and after and the cost."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.console import console, errors, progress_bars, user_errors
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
    bounds_option,
    load_data_from_options,
    load_model_from_options,
)
from bastion.core.literals import Norm

if TYPE_CHECKING:  # the training machinery (torch) is imported when the command runs, not when the CLI starts
    from bastion.core.evidence import HardenRecord


def harden_command(
    model: FactorySpec,
    data: DataSpec,
    method: Annotated[str, typer.Option(help="pgd (PGD adversarial training), trades, fast (FGSM with random "
                                        "start), distill (defensive distillation), ibp or crown-ibp (certified "
                                        "training), noise (Gaussian noise augmentation, the base model for "
                                        "certify --method smoothing), plain.")],
    out: Annotated[Path, typer.Option(help="Folder for model.safetensors, harden.json/.html, before/ and "
                                      "after/ scans and checkpoints/.")],
    weights: Annotated[str | None, typer.Option(
        "--weights", "-w", help="The model's current weights (safetensors): scanned as the 'before'.")] = None,
    norm: Annotated[Norm, typer.Option(help="Threat norm: linf or l2.")] = "linf",
    eps: Annotated[float, typer.Option(help="Budget trained against and scanned at.")] = 0.1,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 128,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: the optimizer's usual).")] = None,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = "adam",
    schedule: Annotated[str, typer.Option(help="constant, cosine, piecewise or one-cycle.")] = "cosine",
    steps: Annotated[int | None, typer.Option(help="pgd, trades: attack steps per batch (default 7).",
                                              show_default=False)] = None,
    beta: Annotated[float | None, typer.Option(help="trades: weight of the robustness term (default 6).",
                                               show_default=False)] = None,
    temperature: Annotated[float | None, typer.Option(help="distill: softmax temperature (default 20).",
                                                      show_default=False)] = None,
    sigma: Annotated[float | None, typer.Option(help="noise: standard deviation of the training noise, in input "
                                                "units (default 0.25); use certify's --sigma.",
                                                show_default=False)] = None,
    eval_data: Annotated[str | None, typer.Option(help="Data for the before/after scans (default: the held-out "
                                                  "validation split).")] = None,
    eval_limit: Annotated[int, typer.Option(help="Scan at most this many evaluation samples.")] = 1000,
    eval_suite: Annotated[str, typer.Option(help="Suite of the before/after scans: quick, standard or "
                                            "full.")] = "standard",
    val_fraction: Annotated[float, typer.Option(help="Share of --data held out for validation; 0 trains on all of it "
                                                "(with --eval-data and --no-early-stop).")] = 0.1,
    early_stop: Annotated[bool, typer.Option(help="Keep the epoch with the best validation robust accuracy; "
                                             "stop after --patience epochs without progress.")] = True,
    patience: Annotated[int, typer.Option(help="Epochs without progress before an early stop.")] = 5,
    fine_tune: Annotated[bool, typer.Option(help="Start from --weights instead of a fresh model.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from OUT/checkpoints.")] = False,
    weight_average: Annotated[float | None, typer.Option(
        help="Keep a moving average of the weights with this decay (e.g. 0.999); it is validated and saved "
             "instead of the last weights.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, shuffling and attacks.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Train on the first N samples only.")] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Harden a factory model against evasion; write weights, evidence and before/after reports."""
    from bastion.scan.report.writer import report_folder
    from bastion.workflows.harden import (
        CHECKPOINTS,
        HardenSettings,
        check_files,
        check_settings,
        has_checkpoints,
        run_harden,
    )
    from bastion.workflows.report import write_harden_reports

    with user_errors():
        given = {"steps": steps, "beta": beta, "temperature": temperature, "sigma": sigma}
        options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        settings = HardenSettings(
            method=method, norm=norm, eps=eps, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            schedule=schedule, seed=seed, options=options, val_fraction=val_fraction, early_stop=early_stop,
            patience=patience, eval_suite=eval_suite, eval_limit=eval_limit, fine_tune=fine_tune, resume=resume,
            weight_average=weight_average)
        check_settings(settings, eval_data_given=bool(eval_data))
        _check_method_flags(method, options)
        bounds_option(bounds)
        check_files(settings, weights, out)
        train = load_data_from_options(data, label_column, schema, limit)
        evaluation = load_data_from_options(eval_data, label_column, schema) if eval_data else None
        with report_folder(out):  # a failed run leaves no new, empty folder behind
            if resume and not has_checkpoints(out / CHECKPOINTS):
                errors.print(f"note: --resume found no checkpoints in {out / CHECKPOINTS}: starting a new run")

            def load(weights_file: str | None):
                return load_model_from_options(model, weights_file, input_shape, num_classes, bounds, mean, std)

            with progress_bars() as progress:
                outcome = run_harden(load, weights, train, evaluation, settings, out, progress=progress)
            paths = write_harden_reports(outcome.record, out)
    print_harden_summary(outcome.record)
    console.print(f"weights: {outcome.weights}; reports: {', '.join(str(p) for p in paths.values())}")


def _check_method_flags(method: str, options: dict[str, Any]) -> None:
    """Refuse a method flag (``--steps``, ``--beta``, ...) that ``method`` does not take."""
    from bastion.core.errors import InputError
    from bastion.defenses.training import method_names, method_options

    known = method_options(method)
    for option in options:
        if known is not None and option not in known:
            takers = [name for name in method_names() if option in (method_options(name) or ())]
            raise InputError(f"--{option} does not apply to --method {method}; it goes with --method "
                             f"{' or '.join(takers)}")


def print_harden_summary(record: HardenRecord) -> None:
    """Before and after, side by side, and what it cost."""
    from rich.table import Table

    cost = record.cost
    table = Table("", "before", "after", title=f"{record.method} at {record.norm} eps={record.eps:g}")
    table.add_row("clean accuracy", _pct(cost.clean_accuracy_before), _pct(cost.clean_accuracy_after))
    table.add_row(f"robust accuracy ({record.after.config.suite})", _pct(cost.robust_accuracy_before),
                  _pct(cost.robust_accuracy_after))
    if cost.certified_accuracy_after is not None:
        table.add_row("certified accuracy", "—", _pct(cost.certified_accuracy_after))
    table.add_row("training time", "", f"{cost.training_seconds:.1f} s")
    console.print(table)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
