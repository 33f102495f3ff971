"""``bastion scan``: red-team a model with a cascade of evasion attacks and write reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    SchemaFile,
    Std,
    WeightsFile,
    load_data_from_options,
    load_model_from_options,
)
from bastion.cli.options import floats, names
from bastion.core.errors import InputError
from bastion.core.literals import Access, Norm
from bastion.scan.defaults import EOT_SAMPLES

if TYPE_CHECKING:  # the scan machinery (torch) is imported when a scan runs, not when the CLI starts
    from bastion.core.records import ScanRecord
    from bastion.scan.adaptive import DefenseSettings
    from bastion.scan.defense_record import DefenseScanRecord, PassComparison


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
    out: Annotated[Path, typer.Option(help="Folder for scan.json, scan.html, scan.sarif, junit.xml "
                                      "(and defense.json with --preprocess).")] = Path("report"),
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 (and fail the JUnit test) when robust "
                                                     "accuracy at the first eps is below this (0..1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every random choice of the attacks.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per attack batch (128 is fastest on CPU).")] = 128,
    limit: Annotated[int | None, typer.Option(help="Scan only the first N samples.")] = None,
    preprocess: Annotated[str | None, typer.Option(
        help="Scan the model behind preprocessing defenses, applied in order: bits:N (bit depth), median:K "
        "(window), jpeg:Q (quality), blur:SIGMA, noise:SIGMA, resize:MIN_SCALE; e.g. bits:4,median:3. The "
        "suite runs twice, plain and adaptive (BPDA/EOT); the adaptive result is the headline and "
        "defense.json holds both.")] = None,
    eot_samples: Annotated[int | None, typer.Option(
        help=f"With --preprocess: random draws averaged per gradient (EOT) through random steps "
        f"(noise, resize). Default {EOT_SAMPLES}.")] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Red-team a classifier with evasion attacks; write JSON evidence and HTML, SARIF, JUnit reports."""
    from bastion.scan.adaptive import run_defended_scan
    from bastion.scan.report.writer import prepare_folder, write_reports
    from bastion.scan.runner import ScanSettings, run_scan

    with user_errors():
        settings = ScanSettings(eps=floats(eps, "--eps"), suite=suite, attacks=names(attacks), norm=norm,
                                targeted=targeted, access=access, seed=seed, batch_size=batch_size,
                                fail_under=fail_under)
        defense = _defense_settings(preprocess, eot_samples, seed)
        prepare_folder(out)
        loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
        dataset = load_data_from_options(data, label_column, schema, limit)
        with progress_bars() as progress:
            if defense is None:
                outcome = run_scan(loaded, dataset, settings, progress=progress)
            else:
                outcome = run_defended_scan(loaded, dataset, settings, defense, progress=progress)
        paths = write_reports(outcome, out)
    print_summary(outcome.record, "adaptive attacks: " if outcome.defense is not None else "")
    if outcome.defense is not None:
        print_defense_summary(outcome.defense)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if not outcome.record.passed():
        console.print(f"[bold red]FAIL[/]: robust accuracy {outcome.record.headline.robust_accuracy:.1%} "
                      f"is under --fail-under {fail_under:.1%}")
        raise typer.Exit(1)


def _defense_settings(preprocess: str | None, eot_samples: int | None, seed: int) -> DefenseSettings | None:
    """The defense to scan, or ``None``; checks the options before any model is loaded."""
    from bastion.defenses.preprocess import parse_preprocess
    from bastion.scan.adaptive import DefenseSettings

    if preprocess is None:
        if eot_samples is not None:
            raise InputError("--eot-samples only applies to a defended scan; add --preprocess, e.g. noise:0.1")
        return None
    if eot_samples is not None and eot_samples < 1:
        raise InputError(f"--eot-samples must be >= 1, got {eot_samples}")
    steps = parse_preprocess(preprocess, seed=seed, option="--preprocess")
    return DefenseSettings(steps=steps, eot_samples=EOT_SAMPLES if eot_samples is None else eot_samples)


def print_summary(record: ScanRecord, prefix: str = "") -> None:
    """One table per eps: each attack's share, then the overall numbers and any sanity flags."""
    for result in record.results:
        table = Table(title=f"{prefix}{record.config.norm} eps={result.eps:g} — clean {result.clean_accuracy:.1%}, "
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
            label = "[yellow]warning" if flag.severity == "warning" else "[cyan]note"
            console.print(f"{label} ({flag.check}):[/] {flag.message}")


def print_defense_summary(defense: DefenseScanRecord) -> None:
    """Plain and adaptive robust accuracy side by side, per eps, with the gradient-hiding verdict."""
    table = Table(title=f"defense {defense.defense.spec} — plain vs adaptive ({defense.adaptive_gradients}) attacks")
    for column in ("eps", "plain robust", "adaptive robust", "gap", "gradient attacks only", "under both", "verdict"):
        table.add_column(column, justify="left" if column == "verdict" else "right")
    for row in defense.comparison:
        table.add_row(f"{row.eps:g}", f"{row.plain_robust_accuracy:.1%}", f"{row.adaptive_robust_accuracy:.1%}",
                      f"{100 * row.gap:+.1f} pts", _gradient_only(row), f"{row.robust_under_both:.1%}", _verdict(row))
    console.print(table)
    if defense.plain_not_real:
        console.print("[bold red]This defense hides gradients; its plain robust accuracy is not real.[/] "
                      "The headline robust accuracy is the adaptive one.")
    elif defense.hides_gradients:
        console.print("[bold yellow]This defense hides gradients from gradient attacks[/]: the plain gradient "
                      "attacks were fooled and the black-box attacks made up for them.")


def _gradient_only(row: PassComparison) -> str:
    if row.plain_gradient_robust_accuracy is None or row.adaptive_gradient_robust_accuracy is None:
        return "-"
    return f"{row.plain_gradient_robust_accuracy:.1%} → {row.adaptive_gradient_robust_accuracy:.1%}"


def _verdict(row: PassComparison) -> str:
    if row.plain_not_real:
        return "[bold red]hides gradients[/]"
    if row.hides_gradients:
        return "[yellow]fools gradient attacks[/]"
    if row.broken_only_by_plain:
        return f"plain broke {row.broken_only_by_plain} more"
    return "consistent"
