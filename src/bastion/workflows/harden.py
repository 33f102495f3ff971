"""``run_harden``: train a robust model, scan it before and after, certify it when trained for that.

The folder it writes::

    out/model.safetensors      the hardened weights (load with the same --model factory)
    out/harden.json, .html     the evidence record and its report: cost, before/after, training curve
    out/before/, out/after/    full scan reports of the given and the hardened model
    out/certify/               certification report (IBP and CROWN-IBP training only)
    out/checkpoints/           per-epoch checkpoints; ``resume=True`` continues from the last one
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save_file

from bastion import __version__
from bastion.certify.network import build_chain
from bastion.core.errors import InputError
from bastion.core.evidence import CertifyRecord, HardenCost, HardenRecord
from bastion.core.ids import array_digest, file_digest
from bastion.core.records import ArtifactRef, DatasetRef, ScanRecord
from bastion.core.seeding import seed_everything
from bastion.core.threat import Norm, ThreatModel
from bastion.data.sources import Dataset
from bastion.defenses.training import EarlyStop, method_names, train_by_name
from bastion.defenses.training.averaging import check_decay
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.scan.progress import ProgressCallback, no_progress
from bastion.scan.report.writer import prepare_folder, write_reports
from bastion.scan.runner import ScanSettings, library_versions, run_scan
from bastion.scan.suites import SUITES
from bastion.workflows.certify import CertifySettings, run_certify
from bastion.workflows.refs import model_ref
from bastion.workflows.report import write_certify_reports
from bastion.workflows.scan_common import check_fits, check_in_bounds

#: Methods ``harden`` accepts (``bastion.defenses.training.METHODS``); these two are certified training.
CERTIFIED_METHODS = ("ibp", "crown-ibp")
WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"  # the folder in OUT with the per-epoch checkpoints


@dataclass(frozen=True)
class HardenSettings:
    """How to harden.

    Attributes:
        method: one of ``METHODS``. norm, eps: the threat model trained against and scanned at.
        epochs, batch_size, lr, optimizer, schedule, seed: the training run.
        options: method options (``steps``, ``beta`` for TRADES, ``temperature`` for distillation, ...).
        val_fraction: share of the training data held out for validation (early stop) and, when no
            evaluation data is given, for the before/after scans; 0 trains on all of it, with no validation
            (then ``early_stop`` must be off and evaluation data given).
        early_stop: keep the epoch with the best validation robust accuracy; stop after ``patience``
            epochs without improvement.
        eval_suite, eval_limit: the before/after scans (suite and number of evaluation samples).
        fine_tune: start from the given weights instead of a fresh initialisation.
        resume: continue from ``out/checkpoints``.
        weight_average: decay of an exponential moving average of the weights (e.g. 0.999) that is
            validated and kept instead of the trained weights; ``None`` (default): none.
    """

    method: str
    norm: Norm = "linf"
    eps: float = 0.1
    epochs: int = 20
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "adam"
    schedule: str = "cosine"
    seed: int = 0
    options: dict[str, Any] | None = None
    val_fraction: float = 0.1
    early_stop: bool = True
    patience: int = 5
    eval_suite: str = "standard"
    eval_limit: int | None = 1000
    fine_tune: bool = False
    resume: bool = False
    weight_average: float | None = None


@dataclass(frozen=True)
class HardenOutcome:
    record: HardenRecord
    weights: Path
    classifier: TorchClassifier


def run_harden(
    load: Callable[[str | None], LoadedModel],
    weights: str | None,
    train: Dataset,
    eval_data: Dataset | None,
    settings: HardenSettings,
    out_dir: str | Path,
    *,
    progress: ProgressCallback = no_progress,
) -> HardenOutcome:
    """Harden the model that ``load(weights)`` builds; write every report into ``out_dir``.

    Args:
        load: builds the model from the factory, with the given weights file or freshly initialised
            (``None``); called once for the baseline and once for the model to train, the latter after
            ``seed_everything(settings.seed)`` so that a fresh model's initialisation follows the seed.
        weights: the weights of the model as it is now (the "before"), or ``None``.
        train: training data; ``val_fraction`` of it is held out for validation.
        eval_data: data for the before/after scans (default: the validation split; required when
            ``val_fraction`` is 0).
    """
    check_settings(settings, eval_data_given=eval_data is not None)
    check_files(settings, weights, out_dir)
    folder = prepare_folder(out_dir)
    _check_checkpoints(folder / CHECKPOINTS, settings.resume)
    before_model = load(weights) if weights else None
    seed_everything(settings.seed)  # a fresh model's initialisation draws from torch's global generator
    trainee = load(weights if settings.fine_tune else None)
    classifier = trainee.classifier
    if trainee.kind == "ensemble":
        raise InputError("bastion harden trains one torch factory model; an ensemble manifest cannot be trained. "
                         "Harden each member (--model pkg.module:factory --weights member.safetensors), then list "
                         "the hardened weights in a manifest")
    if not isinstance(classifier, TorchClassifier) or classifier.kind != "torch":
        raise InputError("bastion harden trains a torch factory model (pkg.module:factory)")
    threat = ThreatModel(norm=settings.norm, eps=settings.eps, bounds=classifier.bounds)
    if settings.method in CERTIFIED_METHODS:
        build_chain(classifier)  # a layer the bounds cannot pass: say so now, not after training
    if eval_data is not None:  # checked before training, which it would otherwise follow by hours
        check_fits(eval_data, classifier, "--eval-data")
        check_in_bounds(eval_data, classifier, "--eval-data")
    fit_data, validation = _split(train, settings.val_fraction, settings.seed)
    evaluation = _limit(eval_data or validation, settings.eval_limit)

    training = _train(classifier, fit_data, validation, threat, settings, folder, progress)
    weights_path = folder / WEIGHTS_FILE
    save_file(classifier.state_tensors(), str(weights_path))
    after_model = LoadedModel(classifier=classifier, description=f"{trainee.description.split(' + ')[0]} + "
                              f"{weights_path}", sha256=file_digest(weights_path), kind="torch")

    scan_settings = ScanSettings(eps=[settings.eps], suite=settings.eval_suite, norm=settings.norm, seed=settings.seed)
    before = _scan(before_model, evaluation, scan_settings, folder / "before", progress) if before_model else None
    after = _scan(after_model, evaluation, scan_settings, folder / "after", progress)
    certified = _certify(after_model, evaluation, settings, folder / "certify", progress)

    record = HardenRecord(
        bastion_version=__version__, library_versions=library_versions(), method=settings.method,
        norm=settings.norm, eps=settings.eps, training=training,
        model_before=_artifact(before_model), model_after=_artifact(after_model),
        train_data=_dataset_ref(fit_data, classifier), eval_data=_dataset_ref(evaluation, classifier),
        before=before, after=after, certified=certified,
        cost=HardenCost(
            training_seconds=float(training["total_seconds"]),
            clean_accuracy_before=before.headline.clean_accuracy if before else None,
            clean_accuracy_after=after.headline.clean_accuracy,
            robust_accuracy_before=before.headline.robust_accuracy if before else None,
            robust_accuracy_after=after.headline.robust_accuracy,
            certified_accuracy_after=certified.certified_accuracy if certified else None,
        ),
    )
    return HardenOutcome(record=record, weights=weights_path, classifier=classifier)


def check_settings(settings: HardenSettings, *, eval_data_given: bool) -> None:
    """Refuse settings that cannot work, before any data is loaded (``InputError`` naming the option to fix)."""
    if settings.method not in method_names():
        raise InputError(f"unknown --method {settings.method!r}; choose one of {', '.join(method_names())}")
    for flag, value in (("--epochs", settings.epochs), ("--batch-size", settings.batch_size),
                        ("--patience", settings.patience)):
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if settings.method != "plain" and not settings.eps > 0:
        raise InputError(f"--eps must be > 0 to harden against attacks, got {settings.eps}")
    if not 0 <= settings.val_fraction < 1:
        raise InputError(f"--val-fraction must be at least 0 and under 1, got {settings.val_fraction}")
    if settings.val_fraction == 0:
        needs = [(flag, use) for flag, use, given in (
            ("--no-early-stop", "the early stop", not settings.early_stop),
            ("--eval-data", "the before/after scans", eval_data_given)) if not given]
        if needs:
            uses, flags = " or ".join(use for _, use in needs), " and ".join(flag for flag, _ in needs)
            raise InputError(f"--val-fraction 0 holds out no validation split for {uses}: add {flags}")
    if settings.eval_limit is not None and settings.eval_limit < 1:
        raise InputError(f"--eval-limit must be >= 1, got {settings.eval_limit}")
    if settings.eval_suite not in SUITES:
        raise InputError(f"unknown --eval-suite {settings.eval_suite!r}; choose one of {', '.join(SUITES)}")
    if settings.weight_average is not None:
        check_decay(settings.weight_average)


def check_files(settings: HardenSettings, weights: str | None, out_dir: str | Path) -> None:
    """Refuse ``--fine-tune`` without weights, and weights that the run would overwrite (``OUT/model.safetensors``)."""
    if settings.fine_tune and not weights:
        raise InputError("--fine-tune starts from the model's current weights: pass them with --weights")
    if weights and Path(weights).resolve() == (Path(out_dir) / WEIGHTS_FILE).resolve():
        raise InputError(f"--weights {weights} is where this run writes the hardened weights ({WEIGHTS_FILE} in "
                         "--out), so they would be overwritten: choose another --out, or copy the weights elsewhere "
                         "first")


def has_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` (``OUT/checkpoints``) holds an earlier run's checkpoints."""
    return folder.is_dir() and any(folder.iterdir())


def _check_checkpoints(folder: Path, resume: bool) -> None:
    """Refuse, before any work, to start afresh over an earlier run's checkpoints (they would be lost)."""
    if not resume and has_checkpoints(folder):
        raise InputError(f"{folder} holds the checkpoints of an earlier run: pass --resume to continue it, "
                         "or choose another --out (or delete that folder) to start afresh")


def _split(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A seeded random split into training and validation parts (validation gets ``fraction``; none at 0)."""
    if fraction == 0:
        return data, None
    count = len(data)
    held_out = max(1, int(round(count * fraction)))
    if count - held_out < 1:
        raise InputError(f"the training data has {count} sample(s): too few to hold out a validation split")
    order = np.random.default_rng(seed).permutation(count)
    parts = []
    for name, index in (("training", order[held_out:]), ("validation", order[:held_out])):
        parts.append(data.subset(np.sort(index), description=f"{data.description}, {name} split ({len(index)})"))
    return parts[0], parts[1]


def _limit(data: Dataset, limit: int | None) -> Dataset:
    if limit is None or len(data) <= limit:
        return data
    return data.subset(slice(0, limit), description=f"{data.description}, first {limit}")


def _train(classifier: TorchClassifier, data: Dataset, validation: Dataset | None, threat: ThreatModel,
           settings: HardenSettings, folder: Path, progress: ProgressCallback) -> dict[str, Any]:
    early_stop = EarlyStop(threat=threat, patience=settings.patience) if settings.early_stop else None
    record = train_by_name(
        settings.method, classifier, data.x, data.y, threat=threat, options=settings.options,
        epochs=settings.epochs, batch_size=settings.batch_size, optimizer=settings.optimizer, lr=settings.lr,
        schedule=settings.schedule, seed=settings.seed,
        validation=None if validation is None else (validation.x, validation.y),
        early_stop=early_stop, checkpoint_dir=folder / CHECKPOINTS, resume=settings.resume,
        weight_average=settings.weight_average,
        on_epoch=lambda epoch, total, *_: progress("training epochs", epoch, total),
    )
    dumped = record.model_dump(mode="json")
    # Distillation trains a teacher first: its time is part of what hardening cost.
    dumped["total_seconds"] = record.seconds + (record.teacher.seconds if record.teacher else 0.0)
    return dumped


def _scan(loaded: LoadedModel, data: Dataset, settings: ScanSettings, folder: Path,
          progress: ProgressCallback) -> ScanRecord:
    outcome = run_scan(loaded, data, settings,
                       progress=lambda task, done, total: progress(f"{folder.name}: {task}", done, total))
    write_reports(outcome, folder)
    return outcome.record


def _certify(loaded: LoadedModel, data: Dataset, settings: HardenSettings, folder: Path,
             progress: ProgressCallback) -> CertifyRecord | None:
    if settings.method not in CERTIFIED_METHODS:
        return None
    certify = CertifySettings(method="crown-ibp", norm=settings.norm, eps=settings.eps, seed=settings.seed,
                              batch_size=256, attack=False)
    record = run_certify(loaded, data, certify,
                         progress=lambda task, done, total: progress(f"certify: {task}", done, total))
    write_certify_reports(record, folder)
    return record


def _artifact(loaded: LoadedModel | None) -> ArtifactRef | None:
    if loaded is None:
        return None
    return model_ref(loaded)


def _dataset_ref(data: Dataset, classifier: TorchClassifier) -> DatasetRef:
    return DatasetRef(description=data.description, count=len(data), sha256=array_digest(data.x, data.y),
                      input_shape=list(classifier.input_shape), num_classes=classifier.num_classes)

