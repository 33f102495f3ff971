"""``bastion data audit`` and ``bastion data quarantine``: find the samples that do not belong, move them out.

``audit`` writes ``audit.json`` (every sample's score and flag per audit, by id) and ``audit.html``;
``quarantine`` reads that record back and takes a selection out of the dataset under version control
(``bastion data commit`` first), as a new version recorded in the ledger.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, user_errors
from bastion.cli.data import data_app
from bastion.cli.model_options import (
    Bounds,
    InputShape,
    LabelColumn,
    Mean,
    NumClasses,
    SchemaFile,
    Std,
    WeightsFile,
)
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.core.records import ArtifactRef
    from bastion.data.sources import Dataset
    from bastion.models.loading import LoadedModel
    from bastion.models.torch_adapter import TorchClassifier
    from bastion.workflows.audit import AuditRecord

CHECK_NAMES = ("duplicates", "leakage", "outliers", "label-issues", "poison")
SELECTION_NAMES = ("suspected", "spectral-signatures", "activation-clustering", "label-issues", "outliers",
                   "duplicates", "near-duplicates", "all")


@data_app.command("audit")
def audit_command(
    path: Annotated[str, typer.Argument(help="The training data: a folder of images per class, an .npz, a CSV or "
                                        "Parquet table, or a built-in (digits:train).", show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The model trained on this data (pkg.module:factory with --weights): its "
        "penultimate features drive the poison detectors. Without it duplicates, leakage, outliers and label "
        "issues run, on the pixels.", show_default=False)] = None,
    weights: WeightsFile = None,
    test: Annotated[str | None, typer.Option(help="Test data, for train/test leakage.", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder for audit.json and audit.html.")] = Path("audit"),
    checks: Annotated[str, typer.Option(help=f"Comma-separated audits to run, of {', '.join(CHECK_NAMES)}.")]
    = ",".join(CHECK_NAMES),
    fp_budget: Annotated[float, typer.Option(help="False-positive budget of the poison consensus, in (0, 1).")]
    = 0.02,
    near_threshold: Annotated[float, typer.Option(help="Cosine similarity from which samples are near "
                                                  "duplicates.")] = 0.99,
    outlier_z: Annotated[float, typer.Option(help="Robust z-score from which a sample is an outlier.")] = 3.5,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation and the clustering.")] = 0,
    known_poison: Annotated[Path | None, typer.Option(
        help="The .poison.json that 'bastion data poison' wrote: score each audit against the samples known to "
        "be poisoned (recall and false positives).", show_default=False)] = None,
    label_column: LabelColumn = "label",
    schema: SchemaFile = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    bounds: Bounds = "0,1",
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Audit training data: duplicates, train/test leakage, outliers, label issues, suspected poison."""
    from bastion.cli.model_options import load_data_from_options, load_model_from_options
    from bastion.scan.report.writer import report_folder
    from bastion.workflows.audit import AuditSettings, run_audit
    from bastion.workflows.audit_report import write_audit_reports

    with user_errors():
        settings = AuditSettings(checks=_checks(checks), fp_budget=fp_budget, near_threshold=near_threshold,
                                 outlier_z=outlier_z, seed=seed)
        if model is None and checks.strip() == "poison":
            raise InputError("--checks poison needs --model (the poison detectors read the model's features)")
        if model is not None and ":" in model and weights is None:
            raise InputError(f"--model {model} is a factory: pass --weights with the weights trained on this data "
                             "(an untrained network's features say nothing about the data)")
        if known_poison is not None and not known_poison.is_file():
            raise InputError(f"--known-poison {known_poison}: file not found")
        with report_folder(out):  # a failed run leaves no new, empty folder behind
            dataset = load_data_from_options(path, label_column, schema)
            locations, root = _locations(path, dataset, schema, label_column)
            classifier, model_ref = None, None
            if model is not None:
                loaded = load_model_from_options(model, weights, input_shape, num_classes, bounds, mean, std)
                classifier, model_ref = _torch_classifier(loaded)
                if classifier is not None and "poison" in settings.checks:
                    _check_features(classifier, dataset, model)
            test_data = load_data_from_options(test, label_column, schema) if test else None
            record = run_audit(dataset, settings, classifier=classifier, model_ref=model_ref, test=test_data,
                               locations=locations, data_path=_data_path(path), manifest_root=root,
                               progress=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
            truth = _known_poison(known_poison, record) if known_poison else None
            if truth is not None:
                record.notes.append(_truth_note(known_poison, record, truth))
            paths = write_audit_reports(record, out, x=dataset.x, bounds=dataset.bounds)
    _print_summary(record, truth)
    console.print(f"reports: {', '.join(str(p) for p in paths.values())}", highlight=False)


@data_app.command("quarantine")
def quarantine_command(
    audit: Annotated[Path, typer.Argument(help="The audit folder (or its audit.json).", show_default=False)],
    select: Annotated[str, typer.Option(help=f"Which flagged samples: {', '.join(SELECTION_NAMES)}.")]
    = "suspected",
    approve: Annotated[bool, typer.Option(help="Move them out. Without it, list what would move.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger (default: the audit and selection).",
                                               show_default=False)] = None,
    actor: Annotated[str | None, typer.Option("--as", help="Who approves, recorded in the ledger (default: "
                                              "$BASTION_USER, else the OS user name).", show_default=False)] = None,
    home: Annotated[Path | None, typer.Option(help="Folder of bastion's state (default: $BASTION_HOME, else "
                                              "./.bastion).", show_default=False)] = None,
) -> None:
    """Take an audit's flagged samples out of the dataset: a new version, the files kept aside, a ledger entry."""
    from bastion.workflows.audit import SELECTIONS, read_audit
    from bastion.workflows.dataset_store import open_dataset_store

    with user_errors():
        record = read_audit(audit)
        chosen = record.selection(select)
        if not chosen:
            ran = [name for name in SELECTIONS[select] if record.column(name) is not None]
            if not ran:
                raise InputError(f"the audit has no {' or '.join(SELECTIONS[select])} results to select from (it did "
                                 f"not run them; its notes: {' '.join(record.notes) or 'none'})")
            console.print(f"nothing to quarantine: the audit selected no sample as {select}")
            return
        if record.data_path is None:
            raise InputError("this audit was of a built-in dataset, which bastion cannot change; audit a folder or "
                             "file under version control")
        _print_selection(record, chosen, select)
        if not approve:
            console.print(f"nothing moved: re-run with --approve to quarantine these {len(chosen)} sample(s)")
            return
        store = open_dataset_store(home, create=False)  # a new, empty store would only split the history
        try:
            dataset = store.dataset_for_path(record.data_path)
            if dataset is None:
                raise InputError(f"{record.data_path} is not under version control; record it first with "
                                 f"'bastion data commit {record.data_path} -m \"...\"', then quarantine")
            current = store.version(dataset.name)
            if record.data.manifest_root and current.merkle_root != record.data.manifest_root:
                raise InputError(f"{dataset.name} {current.label} (root {current.merkle_root[:12]}) is not the data "
                                 f"the audit saw (root {record.data.manifest_root[:12]}); commit the data as "
                                 "audited, or re-run the audit on the current version")
            info = store.quarantine(dataset.name, [record.ids[i] for i in chosen],
                                    locations=[record.locations[i] for i in chosen],
                                    reason=reason or f"bastion data audit: {select}", actor=actor, approved=True)
        finally:
            store.close()
    console.print(f"quarantined {len(chosen)} sample(s) of {info.dataset}: new version {info.label} with "
                  f"{info.sample_count} samples (merkle root {info.merkle_root[:16]}); the files are kept under "
                  f"the store's quarantine folder and the ledger records who approved it", highlight=False)


def _checks(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHECK_NAMES]
    if unknown or not names:
        raise InputError(f"--checks takes names from {', '.join(CHECK_NAMES)}; got {text!r}")
    return names


def _data_path(spec: str) -> str | None:
    """The dataset's path when it is one on disk (built-ins have none)."""
    path = Path(spec)
    return str(path.resolve()) if path.exists() else None


def _locations(spec: str, dataset: Dataset, schema: Path | None,
               label_column: str) -> tuple[list[str | None] | None, str | None]:
    """Each sample's location in the dataset on disk (aligned with ``dataset``) and the manifest's Merkle root."""
    if _data_path(spec) is None:
        return None, None
    from bastion.data.listing import list_samples
    from bastion.data.manifest import manifest_from_listing
    from bastion.data.schema import load_schema

    table_schema = load_schema(schema) if schema is not None else None
    table = Path(spec).suffix.lower() in (".csv", ".parquet")
    # As load_dataset does: the default 'label' gives way to the schema's label column.
    explicit = label_column if not (table_schema is not None and label_column == "label") else None
    listing = list_samples(Path(spec), schema=table_schema, label_column=explicit if table else None)
    # Exact copies share an id: each id's locations are dealt out in order, so the second copy of a file gets the
    # second location (the loader and the listing both go through the files in sorted order).
    where: dict[str, deque[str]] = {}
    for entry in listing.entries:
        where.setdefault(entry.id, deque()).append(entry.location)
    root = manifest_from_listing(listing).merkle_root
    return [where[sample_id].popleft() if where.get(sample_id) else None for sample_id in dataset.sample_ids], root


def _check_features(classifier: TorchClassifier, dataset: Dataset, model: str) -> None:
    """Refuse, before any audit runs, a torch model whose penultimate features cannot be read (a TorchScript file
    has no ``nn.Linear`` a hook can catch): the poison audit it was given for would not run."""
    from bastion.defenses.poison import penultimate_features

    try:
        penultimate_features(classifier, dataset.x[:2])
    except InputError as error:
        raise InputError(f"the poison audit cannot read --model {model}'s features: {error}. Pass the network as a "
                         "factory with --weights, or leave poison out of --checks") from None


def _torch_classifier(loaded: LoadedModel) -> tuple[TorchClassifier | None, ArtifactRef]:
    """The torch network behind ``loaded`` (``None`` for ONNX/scikit-learn models) and its reference."""
    from bastion.core.records import ArtifactRef
    from bastion.models.torch_adapter import TorchClassifier

    classifier = loaded.classifier
    ref = ArtifactRef(description=loaded.description, sha256=loaded.sha256, kind=loaded.kind, access="white")
    return (classifier if isinstance(classifier, TorchClassifier) else None), ref


def _known_poison(path: Path, record: AuditRecord) -> list[bool]:
    """Per sample of ``record``, whether ``path`` (a ``.poison.json``) names it as poisoned."""
    import json

    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["poisoned"]
        locations = {entry["location"] for entry in entries}
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = "not valid JSON" if isinstance(error, ValueError) else f"no {error} field"
        raise InputError(f"--known-poison {path}: not a .poison.json written by 'bastion data poison' ({reason})") \
            from None
    unknown = locations - set(record.locations)
    if unknown:
        raise InputError(f"--known-poison {path} names {len(unknown)} location(s) not in the audited data, e.g. "
                         f"{sorted(unknown)[0]}")
    return [location in locations for location in record.locations]


def _truth_counts(record: AuditRecord, truth: list[bool]) -> dict[str, tuple[int, int]]:
    """Per audit over the training samples: (known poisoned samples it flagged, clean samples it flagged)."""
    counts = {}
    for column in record.audits:
        if column.ids is None:
            found = sum(f and t for f, t in zip(column.flags, truth, strict=True))
            counts[column.name] = (found, column.flagged_count - found)
    return counts


def _truth_note(path: Path, record: AuditRecord, truth: list[bool]) -> str:
    """One line per audit: how many of the known poisoned samples it flagged, and its false positives."""
    parts = [f"{name} {found} of {sum(truth)} found, {false} false positives"
             for name, (found, false) in _truth_counts(record, truth).items()]
    return f"Against the known poison in {path.name} ({sum(truth)} samples): " + "; ".join(parts) + "."


def _print_summary(record: AuditRecord, truth: list[bool] | None) -> None:
    from rich.table import Table

    columns = ["audit", "flagged", "of"] + (["known poison found", "false positives"] if truth else [])
    table = Table(*columns, title=f"audit of {len(record.ids):,} samples ({record.seconds:.1f} s)")
    counts = _truth_counts(record, truth) if truth else {}
    for column in record.audits:
        row = [column.name, f"{column.flagged_count:,}", f"{len(column.scores):,}"]
        if column.name in counts:
            found, false = counts[column.name]
            row += [f"{found} of {sum(truth)} ({found / max(sum(truth), 1):.0%})",
                    f"{false} ({false / max(len(truth) - sum(truth), 1):.1%})"]
        table.add_row(*row)
    console.print(table)
    for note in record.notes:
        console.print(f"note: {note}", highlight=False)


def _print_selection(record: AuditRecord, chosen: list[int], select: str, shown: int = 20) -> None:
    from rich.table import Table

    table = Table("location", "label", "id", title=f"{len(chosen)} sample(s) selected as {select}")
    for i in chosen[:shown]:
        table.add_row(record.locations[i] or f"#{i}", record.class_names[record.labels[i]], record.ids[i][:16])
    console.print(table)
    if len(chosen) > shown:
        console.print(f"... and {len(chosen) - shown} more (audit.json lists them all)")
