"""``bastion certify``: certified accuracy by randomized smoothing or by IBP/CROWN bounds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

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
    warn_if_untrained,
)
from bastion.cli.options import floats
from bastion.core.errors import InputError
from bastion.core.literals import Norm

if TYPE_CHECKING:  # the certification machinery (torch, SciPy) is imported when the command runs
    from bastion.core.evidence import CertifyRecord
    from bastion.scan.engine import ScanEngine

Method = Literal["smoothing", "ibp", "crown", "crown-ibp"]


def certify_command(
    model: ModelSpec,
    data: DataSpec,
    method: Annotated[Method, typer.Option(help="smoothing (Gaussian, l2, any model) or bounds on a torch "
                                           "network: crown (tightest), crown-ibp, ibp (fastest).")],
    weights: WeightsFile = None,
    norm: Annotated[Norm | None, typer.Option(help="Ball of the bounds methods: linf (default) or l2. "
                                              "Smoothing certifies l2.")] = None,
    eps: Annotated[float | None, typer.Option(help="Headline radius; required for bounds, default sigma for "
                                              "smoothing.")] = None,
    radii: Annotated[str | None, typer.Option(help="Radii of the certified-accuracy curve, comma-separated "
                                              "(default: multiples of sigma or eps).")] = None,
    sigma: Annotated[float, typer.Option(help="Smoothing: std of the Gaussian noise, in input units.")] = 0.25,
    n: Annotated[int, typer.Option("--n", help="Smoothing: noise samples to estimate the top class's "
                                   "probability.")] = 10_000,
    n0: Annotated[int, typer.Option("--n0", help="Smoothing: noise samples to pick the top class.")] = 100,
    alpha: Annotated[float, typer.Option(help="Smoothing: failure probability of each certificate.")] = 0.001,
    sequential: Annotated[bool, typer.Option(help="Smoothing: stop sampling a point once its certificate at "
                                             "every curve radius is decided (at most --n samples).")] = False,
    attack: Annotated[bool, typer.Option(help="Also attack the model at the headline radius (quick suite), "
                                         "for accuracy under attack next to certified accuracy.")] = True,
    out: Annotated[Path, typer.Option(help="Folder for certify.json and certify.html.")] = Path("certify-report"),
    fail_under: Annotated[float | None, typer.Option(help="Exit 1 when certified accuracy at the headline radius "
                                                     "is below this (0..1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise (smoothing) and of the attack.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Noisy copies per forward pass (smoothing) or samples per "
                                            "bound pass.")] = 1000,
    limit: Annotated[int | None, typer.Option(help="Certify only the first N samples.")] = None,
    engine: Annotated[str, typer.Option(help="Where --method smoothing runs: local (this process) or ray (sharded "
                                        "over a Ray cluster; pip install 'bastion\\[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: the cluster, e.g. ray://head:10001 or auto (default: a new local Ray instance).",
        show_default=False)] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Prove robustness: certified accuracy with its curve against radius; JSON evidence and HTML report."""
    from bastion.scan.report.writer import report_folder
    from bastion.workflows.certify import CertifySettings, check_certify_settings, run_certify
    from bastion.workflows.report import write_certify_reports

    with user_errors():
        if fail_under is not None and not 0 <= fail_under <= 1:
            raise InputError(f"--fail-under is a certified accuracy in [0, 1], got {fail_under}")
        settings = CertifySettings(
            method=method, norm=norm, eps=eps, radii=floats(radii, "--radii") if radii else None, sigma=sigma,
            n=n, n0=n0, alpha=alpha, sequential=sequential, seed=seed, batch_size=batch_size, attack=attack)
        chosen_engine = _engine(engine, ray_address, settings.method)
        check_certify_settings(settings)
        loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
        warn_if_untrained(model, weights)
        dataset = load_data_from_options(data, label_column, schema, limit)
        with report_folder(out):  # a failed run leaves no new, empty folder behind
            with progress_bars() as progress:
                record = run_certify(loaded, dataset, settings, progress=progress, engine=chosen_engine)
            paths = write_certify_reports(record, out)
    print_certify_summary(record)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if fail_under is not None and record.certified_accuracy < fail_under:
        console.print(f"[bold red]FAIL[/]: certified accuracy {record.certified_accuracy:.1%} is under "
                      f"--fail-under {fail_under:.1%}")
        raise typer.Exit(1)


def print_certify_summary(record: CertifyRecord) -> None:
    """Clean, under attack and certified accuracy, then the curve."""
    from rich.table import Table

    config = record.config
    robust = "—" if record.robust_accuracy is None else f"{record.robust_accuracy:.1%}"
    certified = (f"certified {record.certified_accuracy:.1%} at {config.norm} radius {config.radius:g} "
                 f"({len(record.samples)} samples, abstained {record.abstain_rate:.1%}, {record.seconds:.1f} s)")
    if config.method == "smoothing":  # the clean and attacked figures are the base model's, not the smoothed one's
        smoothed_clean = next(point.certified_accuracy for point in record.curve if point.radius == 0)
        console.print(f"smoothing: base model without noise: clean {record.clean_accuracy:.1%}, under attack "
                      f"{robust}; smoothed classifier: clean {smoothed_clean:.1%}, {certified}")
    else:
        console.print(f"{config.method}: clean {record.clean_accuracy:.1%}, under attack {robust}, {certified}")
    table = Table("radius", "certified accuracy", title="certified accuracy against radius")
    for point in record.curve:
        table.add_row(f"{point.radius:g}", f"{point.certified_accuracy:.1%}")
    console.print(table)


def _engine(name: str, ray_address: str | None, method: str) -> ScanEngine | None:
    """The engine the options name (``None``: here); checks them."""
    if name == "local":
        if ray_address is not None:
            raise InputError("--ray-address applies to --engine ray")
        return None
    if name != "ray":
        raise InputError(f"--engine is local or ray, got {name!r}")
    if method != "smoothing":
        raise InputError(f"--engine ray certifies by --method smoothing; --method {method} runs here")
    from bastion.scan.engine import RayEngine

    return RayEngine(ray_address)
