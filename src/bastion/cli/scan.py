"""``bastion scan``: red-team a model with a cascade of evasion attacks, or with the privacy or extraction suite,
and write reports. The privacy and extraction suites live in :mod:`bastion.cli.scan_suites`."""

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
    NumClasses,
    SchemaFile,
    Std,
    WeightsFile,
    load_data_from_options,
)
from bastion.cli.options import floats, names
from bastion.cli.scan_suites import (
    DATA_SUITES,
    TargetOptions,
    data_suite_conflicts,
    print_endpoint,
    run_extraction_suite,
    run_privacy_suite,
)
from bastion.core.errors import InputError
from bastion.core.literals import Access, Norm
from bastion.scan.defaults import EOT_SAMPLES

if TYPE_CHECKING:  # the scan machinery (torch) is imported when a scan runs, not when the CLI starts
    from bastion.core.records import ScanRecord
    from bastion.scan.adaptive import DefenseSettings
    from bastion.scan.defense_record import DefenseScanRecord, PassComparison
    from bastion.scan.engine import ScanEngine


_DEFAULT_EPS = "0.1"
OptionalModelSpec = Annotated[str | None, typer.Option(
    "--model", "-m",
    help="pkg.module:factory (with --weights), a TorchScript file, an ONNX file, a .skops file or an ensemble "
         "manifest (.yaml: members to average). Or --endpoint.",
    show_default=False,
)]


def scan_command(
    model: OptionalModelSpec = None,
    *,
    data: DataSpec,
    weights: WeightsFile = None,
    endpoint: Annotated[str | None, typer.Option(
        help="A live model served over HTTP (Open Inference Protocol v2: KServe, Triton, bastion's gateway), "
        "https://host/v2/models/NAME, instead of --model.", show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option(
        help="The endpoint's API key, sent as 'Authorization: Bearer KEY' (default: $BASTION_API_KEY). Never "
        "printed or written to a report.", show_default=False)] = None,
    journal: Annotated[Path | None, typer.Option(
        help="A file keeping the endpoint's answers (JSON lines), so an interrupted scan resumes without paying "
        "for them again.", show_default=False)] = None,
    budget: Annotated[int | None, typer.Option(
        help="Queries: for --suite extraction, the most of each extraction run (default 5000); otherwise the most "
        "samples sent to an --endpoint (default: no limit).", show_default=False)] = None,
    norm: Annotated[Norm, typer.Option(help="Perturbation norm: linf or l2.")] = "linf",
    eps: Annotated[str, typer.Option(help="Budget(s), comma-separated; the first is the headline, "
                                     "e.g. 0.1 or 0.05,0.1,0.2 for a curve.")] = _DEFAULT_EPS,
    suite: Annotated[str, typer.Option(help="Evasion: quick (FGSM+PGD), standard (APGD-CE, APGD-T, Square) or full "
                                       "(every attack). privacy: membership inference, model inversion and output "
                                       "defenses (needs --train-data). extraction: model stealing (Knockoff Nets) "
                                       "within --budget queries, and output defenses.")] = "standard",
    attacks: Annotated[str | None, typer.Option(help="Comma-separated attack names instead of a "
                                                "suite (see 'bastion attacks').")] = None,
    targeted: Annotated[bool, typer.Option(help="Targeted threat: random wrong target per sample.")] = False,
    access: Annotated[Access | None, typer.Option(help="Limit the attacker to white, scores or labels "
                                                 "access (default: what the model offers).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for scan.json, scan.html, scan.sarif, junit.xml "
                                      "(and defense.json with --preprocess); privacy.json and privacy.html, or "
                                      "extraction.json and extraction.html, for those suites.")] = Path("report"),
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 (and fail the JUnit test) when robust "
                                                     "accuracy at the first eps is below this (0..1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every random choice of the attacks.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per attack batch (128 is fastest on CPU).")] = 128,
    limit: Annotated[int | None, typer.Option(help="Scan only the first N samples.")] = None,
    engine: Annotated[str, typer.Option(help="Where the work runs: local (this process) or ray (evasion cascades "
                                        "sharded, privacy's shadow models trained, over a Ray cluster; "
                                        "pip install 'bastion\\[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: the cluster, e.g. ray://head:10001 or auto (default: a new local Ray instance).",
        show_default=False)] = None,
    shards: Annotated[int | None, typer.Option(
        help="--engine ray: shards per eps (default: the cluster's CPUs). Each shard holds whole --batch-size "
             "batches, so there are at most samples / --batch-size of them: lower --batch-size for more.",
        show_default=False)] = None,
    preprocess: Annotated[str | None, typer.Option(
        help="Scan the model behind preprocessing defenses, applied in order: bits:N (bit depth), median:K "
        "(window), jpeg:Q (quality), blur:SIGMA, noise:SIGMA, resize:MIN_SCALE; e.g. bits:4,median:3. The "
        "suite runs twice, plain and adaptive (BPDA/EOT); the adaptive result is the headline and "
        "defense.json holds both.")] = None,
    eot_samples: Annotated[int | None, typer.Option(
        help=f"With --preprocess: random draws averaged per gradient (EOT) through random steps "
        f"(noise, resize). Default {EOT_SAMPLES}.")] = None,
    train_data: Annotated[str | None, typer.Option(
        help="--suite privacy: the data the model was trained on (the members); --data is then data it was not "
        "trained on (the non-members). Same formats as --data.", show_default=False)] = None,
    shadows: Annotated[int | None, typer.Option(
        help="--suite privacy: shadow models LiRA trains, each on half of members and non-members together "
        "(default 16).", show_default=False)] = None,
    shadow_epochs: Annotated[int | None, typer.Option(
        help="--suite privacy: epochs of each shadow (default 10, as 'bastion train'); match the model's training.",
        show_default=False)] = None,
    shadow_model: Annotated[str | None, typer.Option(
        help="--suite privacy: pkg.module:factory building the shadows (default: the --model factory; without "
        "one LiRA is skipped).", show_default=False)] = None,
    copy_model: Annotated[str | None, typer.Option(
        help="--suite extraction: pkg.module:factory building the attacker's copies (default: the --model "
        "factory, else a built-in network for the input shape).", show_default=False)] = None,
    copy_epochs: Annotated[int | None, typer.Option(
        help="--suite extraction: train each copy exactly this many epochs (default 30, and at least 1000 "
        "optimiser steps for copies trained on few queries).", show_default=False)] = None,
    eval_data: Annotated[str | None, typer.Option(
        help="--suite extraction: held-out data for fidelity and accuracy (default: 20% of --data, chosen by "
        "sample id; the rest is the attacker's pool).", show_default=False)] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Red-team a classifier or a live endpoint: evasion suites, privacy (membership inference, inversion) or
    extraction; write JSON evidence and HTML reports (and SARIF, JUnit for evasion)."""
    target = TargetOptions(model=model, endpoint=endpoint, weights=weights, api_key=api_key, journal=journal,
                           input_shape=input_shape, num_classes=num_classes, bounds=bounds, mean=mean, std=std)
    with user_errors():
        data_suite_conflicts(suite, {
            "--train-data": train_data, "--shadows": shadows, "--shadow-epochs": shadow_epochs,
            "--shadow-model": shadow_model, "--copy-model": copy_model, "--copy-epochs": copy_epochs,
            "--eval-data": eval_data,
            "--shards": shards,
            "--attacks": attacks, "--preprocess": preprocess, "--eot-samples": eot_samples,
            "--fail-under": fail_under, "--targeted": targeted, "--access": access,
            "--eps": None if eps == _DEFAULT_EPS else eps, "--norm": None if norm == "linf" else norm})
    if suite not in DATA_SUITES:
        _evasion_scan(target, data, budget, norm, eps, suite, attacks, targeted, access, out, fail_under, seed,
                      batch_size, limit, preprocess, eot_samples, label_column, schema,
                      _engine(engine, ray_address, shards, target))
        return
    with user_errors():
        if suite == "privacy":
            paths = run_privacy_suite(target, data=data, train_data=train_data, out=out, seed=seed,
                                      batch_size=batch_size, limit=limit, budget=budget, shadows=shadows,
                                      shadow_epochs=shadow_epochs, shadow_model=shadow_model,
                                      label_column=label_column, schema=schema,
                                      engine=_shadow_engine(engine, ray_address, target))
        else:
            if engine != "local" or ray_address is not None:
                raise InputError("--engine and --ray-address apply to the evasion suites and --suite privacy (its "
                                 "shadow models), not to --suite extraction")
            paths = run_extraction_suite(target, data=data, eval_data=eval_data, out=out, seed=seed, limit=limit,
                                         budget=budget, copy_model=copy_model, copy_epochs=copy_epochs,
                                         label_column=label_column, schema=schema)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}", highlight=False)


def _evasion_scan(
    target: TargetOptions, data: str, budget: int | None, norm: Norm, eps: str, suite: str, attacks: str | None,
    targeted: bool, access: Access | None, out: Path, fail_under: float | None, seed: int, batch_size: int,
    limit: int | None, preprocess: str | None, eot_samples: int | None, label_column: str, schema: Path | None,
    engine: ScanEngine,
) -> None:
    """The evasion suites: a cascade per eps, optionally through preprocessing defenses."""
    from bastion.scan.adaptive import run_defended_scan
    from bastion.scan.report.writer import report_folder, write_reports
    from bastion.scan.runner import ScanSettings, run_scan

    with user_errors():
        settings = ScanSettings(eps=floats(eps, "--eps"), suite=suite, norm=norm, targeted=targeted, access=access,
                                attacks=names(attacks, "--attacks", example="fgsm,pgd (see 'bastion attacks')",
                                              otherwise="run the --suite's attacks"),
                                seed=seed, batch_size=batch_size, fail_under=fail_under)
        defense = _defense_settings(preprocess, eot_samples, seed)
        target.check(budget, budget_for_extraction=False)
        with report_folder(out):  # a failed scan leaves no new, empty report folder behind
            loaded = target.load(endpoint_budget=budget)
            dataset = load_data_from_options(data, label_column, schema, limit)
            with progress_bars() as progress:
                if defense is None:
                    outcome = run_scan(loaded, dataset, settings, progress=progress, engine=engine)
                else:
                    outcome = run_defended_scan(loaded, dataset, settings, defense, progress=progress,
                                                engine=engine)
            paths = write_reports(outcome, out)
    print_summary(outcome.record, "adaptive attacks: " if outcome.defense is not None else "")
    if outcome.defense is not None:
        print_defense_summary(outcome.defense)
    print_endpoint(outcome.record.endpoint)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if not outcome.record.passed():
        console.print(f"[bold red]FAIL[/]: robust accuracy {outcome.record.headline.robust_accuracy:.1%} "
                      f"is under --fail-under {fail_under:.1%}")
        raise typer.Exit(1)


def _engine(name: str, ray_address: str | None, shards: int | None, target: TargetOptions) -> ScanEngine:
    """The scan engine the options name; checks them before anything is loaded."""
    from bastion.scan.engine import LocalEngine, RayEngine

    with user_errors():
        if name == "local":
            if ray_address is not None or shards is not None:
                raise InputError("--ray-address and --shards apply to --engine ray")
            return LocalEngine()
        if name != "ray":
            raise InputError(f"--engine is local or ray, got {name!r}")
        if target.endpoint is not None:
            raise InputError("--engine ray scans a model the workers can load; scan a live --endpoint with the "
                             "local engine (its budget and journal live in this process)")
        return RayEngine(ray_address, shards=shards)


def _shadow_engine(name: str, ray_address: str | None, target: TargetOptions) -> ScanEngine | None:
    """The engine for LiRA's shadow models: ``None`` (trained here, one by one, with progress) unless Ray."""
    engine = _engine(name, ray_address, None, target)
    return None if engine.name == "local" else engine


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
