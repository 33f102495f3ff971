"""``bastion scan``: red-team a model with a cascade of evasion attacks and write reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.console import console, progress_bars, user_errors
from bastion.cli.model_options import (
    Bounds,
    DataSpec,
    InputShape,
    LabelColumn,
    Mean,
    ModelSpec,
    NumClasses,
    Std,
    WeightsFile,
    load_model_from_options,
)
from bastion.cli.options import floats, names
from bastion.core.records import ScanRecord
from bastion.core.threat import Access, Norm
from bastion.data.sources import load_dataset
from bastion.scan.report.writer import prepare_folder, write_reports
from bastion.scan.runner import ScanSettings, run_scan


def scan_command(
    model: ModelSpec,
    data: DataSpec,
    weights: WeightsFile = None,
    norm: Annotated[Norm, typer.Option(help="Perturbation norm: linf or l2.")] = "linf",
    eps: Annotated[str, typer.Option(help="Budget(s), comma-separated; the first is the headline, "
                                     "e.g. 0.1 or 0.05,0.1,0.2 for a curve.")] = "0.1",
    suite: Annotated[str, typer.Option(help="quick (FGSM+PGD), standard (APGD-CE, APGD-T, Square) "
                                       "or full (every attack).")] = "standard",
    attacks: Annotated[str | None, typer.Option(help="Comma-separated attack names instead of a "
                                                "suite (see 'bastion attacks').")] = None,
    targeted: Annotated[bool, typer.Option(help="Targeted threat: random wrong target per sample.")] = False,
    access: Annotated[Access | None, typer.Option(help="Limit the attacker to white, scores or labels "
                                                 "access (default: what the model offers).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for scan.json, scan.html, scan.sarif, junit.xml.")] = Path("report"),
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 (and fail the JUnit test) when robust "
                                                     "accuracy at the first eps is below this (0..1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every random choice of the attacks.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per attack batch (128 is fastest on CPU).")] = 128,
    limit: Annotated[int | None, typer.Option(help="Scan only the first N samples.")] = None,
    label_column: LabelColumn = "label",
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Red-team a classifier with evasion attacks; write JSON evidence and HTML, SARIF, JUnit reports."""
    with user_errors():
        settings = ScanSettings(eps=floats(eps, "--eps"), suite=suite, attacks=names(attacks), norm=norm,
                                targeted=targeted, access=access, seed=seed, batch_size=batch_size,
                                fail_under=fail_under)
        prepare_folder(out)
        loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
        dataset = load_dataset(data, label_column=label_column, limit=limit)
        with progress_bars() as progress:
            outcome = run_scan(loaded, dataset, settings, progress=progress)
        paths = write_reports(outcome, out)
    print_summary(outcome.record)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if not outcome.record.passed():
        console.print(f"[bold red]FAIL[/]: robust accuracy {outcome.record.headline.robust_accuracy:.1%} "
                      f"is under --fail-under {fail_under:.1%}")
        raise typer.Exit(1)


def print_summary(record: ScanRecord) -> None:
    """One table per eps: each attack's share, then the overall numbers and any sanity flags."""
    for result in record.results:
        table = Table(title=f"{record.config.norm} eps={result.eps:g} — clean {result.clean_accuracy:.1%}, "
                      f"robust {result.robust_accuracy:.1%} ({len(result.samples)} samples)")
        for column in ("attack", "attacked", "broken", "robust after", "queries", "seconds"):
            table.add_column(column, justify="left" if column == "attack" else "right")
        for attack in result.attacks:
            if attack.skipped:
                table.add_row(attack.name, "-", "-", "-", "-", f"skipped: {attack.skipped}")
                continue
            table.add_row(attack.name, str(attack.points_attacked), str(attack.points_broken),
                          f"{attack.robust_accuracy_after:.1%}", f"{attack.queries:,}", f"{attack.seconds:.1f}")
        console.print(table)
        for flag in result.flags:
            console.print(f"[yellow]warning ({flag.check}):[/] {flag.message}")
