"""``run_audit``: duplicates, train/test leakage, outliers, label issues and suspected poison, one record.

What ``bastion data audit`` runs. Every audit gives each training sample (named by its id) a score,
higher = more suspicious, and a flag (:mod:`bastion.data.audit`). With a torch model the audits read
its penultimate features (what poison detectors need: a backdoor shows in the representation, not
in the pixels); without one they read the pixels and the poison detectors are skipped, with a note.

The record (:class:`AuditRecord`, ``audit.json``) is columnar: the sample ids, locations and labels
once, then one column of scores and flags per audit. ``bastion data quarantine`` reads it back and
quarantines a selection (:meth:`AuditRecord.selection`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion import __version__
from bastion.core.errors import InputError
from bastion.core.records import ArtifactRef, DatasetRef
from bastion.data.audit import (
    AuditResult,
    exact_duplicates,
    label_issues,
    leakage,
    near_duplicates,
    outliers,
    poison_audit,
)
from bastion.data.sources import Dataset
from bastion.scan.runner import library_versions
from bastion.workflows.refs import dataset_ref
from bastion.workflows.scan_common import Progress

Check = Literal["duplicates", "leakage", "outliers", "label-issues", "poison"]
CHECKS: tuple[Check, ...] = ("duplicates", "leakage", "outliers", "label-issues", "poison")

#: What ``bastion data quarantine --select`` accepts, and the audit column each one reads.
SELECTIONS: dict[str, tuple[str, ...]] = {
    "suspected": ("poison-consensus",),
    "spectral-signatures": ("spectral-signatures",),
    "activation-clustering": ("activation-clustering",),
    "label-issues": ("label-issues",),
    "outliers": ("outliers",),
    "duplicates": ("exact-duplicates",),
    "near-duplicates": ("near-duplicates",),
    "all": ("poison-consensus", "label-issues", "outliers", "exact-duplicates", "near-duplicates"),
}

class AuditSettings(BaseModel):
    """What to audit and how.

    Attributes:
        checks: the audits to run, default all of :data:`CHECKS` (``leakage`` needs test data,
            ``poison`` a torch model; each is skipped with a note otherwise).
        fp_budget: the poison consensus's false-positive budget, default 0.02.
        near_threshold: cosine similarity from which two samples are near duplicates, default 0.99.
        outlier_z: robust z-score from which a sample is an outlier, default 3.5.
        label_folds: cross-validation folds for the out-of-sample probabilities, default 5.
        batch_size: forward-pass batch for the features, default 256.
        seed: seeds the cross-validation and the clustering, default 0.
    """

    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = Field(default_factory=lambda: list(CHECKS))
    fp_budget: float = Field(default=0.02, gt=0, lt=1)
    near_threshold: float = Field(default=0.99, gt=0, le=1)
    outlier_z: float = Field(default=3.5, gt=0)
    label_folds: int = Field(default=5, ge=2)
    batch_size: int = Field(default=256, ge=1)
    seed: int = 0

    @field_validator("checks")
    @classmethod
    def _some_checks(cls, checks: list[Check]) -> list[Check]:
        if not checks:
            raise ValueError(f"choose at least one check of {', '.join(CHECKS)}")
        return list(dict.fromkeys(checks))


class AuditColumn(BaseModel):
    """One audit's result: its parameters and summary, and one score and flag per sample.

    ``ids`` is set only when the audit is over other samples than the record's (``leakage``: the
    test samples); otherwise the scores and flags follow :attr:`AuditRecord.ids`.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    scores: list[float]
    flags: list[bool]
    ids: list[str] | None = None

    @property
    def flagged_count(self) -> int:
        return sum(self.flags)


class AuditRecord(BaseModel):
    """The evidence record of one audit (``audit.json``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["audit"] = "audit"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    config: AuditSettings
    data: DatasetRef
    data_path: str | None = Field(default=None, description="the dataset audited, as given on the command line")
    test_data: DatasetRef | None = None
    model: ArtifactRef | None = None
    features: str = Field(description="what the audits compared: the model's penultimate features, or pixels")
    class_names: list[str]
    ids: list[str]
    locations: list[str | None]
    labels: list[int]
    audits: list[AuditColumn]
    notes: list[str] = Field(default_factory=list)
    seconds: float

    def column(self, name: str) -> AuditColumn | None:
        """The audit called ``name``, or ``None`` when it did not run."""
        return next((column for column in self.audits if column.name == name), None)

    def selection(self, name: str) -> list[int]:
        """Positions (into ``ids``) of the samples ``quarantine --select name`` takes, most suspicious first.

        The duplicate audits already keep one copy of every group whose labels agree (they flag the
        others) and flag every member of a group whose labels conflict. Copies share an id, so the
        quarantine moves them by location.
        """
        if name not in SELECTIONS:
            raise InputError(f"unknown selection {name!r}; choose one of {', '.join(SELECTIONS)}")
        chosen: dict[int, None] = {}
        for audit in SELECTIONS[name]:
            column = self.column(audit)
            if column is None:
                continue
            order = np.argsort(-np.asarray(column.scores), kind="stable")
            chosen.update((int(i), None) for i in order if column.flags[i])
        return list(chosen)


def run_audit(
    dataset: Dataset,
    settings: AuditSettings,
    *,
    classifier: Any | None = None,
    model_ref: ArtifactRef | None = None,
    test: Dataset | None = None,
    locations: Sequence[str | None] | None = None,
    data_path: str | None = None,
    manifest_root: str | None = None,
    progress: Progress | None = None,
) -> AuditRecord:
    """Audit ``dataset`` and return the record.

    Args:
        dataset: the training set (``x`` ``(N, ...)``, ``y`` ``(N,)``; ids from its files when loaded from disk).
        settings: which audits, and their thresholds.
        classifier: a torch classifier (:class:`~bastion.models.torch_adapter.TorchClassifier`) whose
            penultimate features the audits read; ``None`` audits the pixels and skips ``poison``.
        model_ref: the model's description and hash, for the record.
        test: test data for ``leakage`` (skipped without it).
        locations: where each sample lives (``cat/001.png``), aligned with ``dataset``; shown in reports.
        data_path, manifest_root: recorded, so that quarantine can check the data did not change.
        progress: called with a line before each audit.
    """
    started = time.perf_counter()
    say = progress or (lambda line: None)
    ids = dataset.sample_ids
    if locations is not None and len(locations) != len(ids):
        raise InputError(f"locations must give one entry per sample: {len(locations)} for {len(ids)} samples")
    notes: list[str] = []
    if classifier is None and model_ref is not None:
        notes.append(f"The model ({model_ref.kind}) is not a torch network, whose penultimate features the poison "
                     "detectors need.")
    features = _features(classifier, dataset, settings, notes, say)
    columns: list[AuditColumn] = []
    for check in settings.checks:
        columns.extend(_run_check(check, dataset, test, features, settings, columns, notes, say))
    return AuditRecord(
        bastion_version=__version__,
        library_versions=library_versions("cleanlab"),
        config=settings,
        data=dataset_ref(dataset, manifest_root),
        data_path=data_path,
        test_data=dataset_ref(test) if test is not None else None,
        model=model_ref,
        features="the model's penultimate-layer features" if features is not None
        else "pixels, average-pooled to at most 16x16",
        class_names=list(dataset.class_names),
        ids=list(ids),
        locations=list(locations) if locations is not None else [None] * len(ids),
        labels=[int(label) for label in dataset.y],
        audits=columns,
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def _features(classifier: Any | None, dataset: Dataset, settings: AuditSettings, notes: list[str],
              say: Progress) -> np.ndarray | None:
    if classifier is None:
        notes.append("Without a torch model: duplicates, outliers and label issues read the pixels; the poison "
                     "detectors, which need a model's features, did not run (pass --model with a torch network).")
        return None
    from bastion.defenses.poison import penultimate_features

    say(f"features: penultimate layer of the model on {len(dataset):,} samples")
    try:
        return penultimate_features(classifier, dataset.x, batch_size=settings.batch_size)
    except InputError as error:
        notes.append(f"The model's penultimate features are unavailable ({error}); the audits read the pixels "
                     "and the poison detectors did not run.")
        return None


def _run_check(check: Check, dataset: Dataset, test: Dataset | None, features: np.ndarray | None,
               settings: AuditSettings, done: list[AuditColumn], notes: list[str], say: Progress) -> list[AuditColumn]:
    ids, x, y = dataset.sample_ids, dataset.x, dataset.y
    if check == "duplicates":
        say("exact and near duplicates")
        return [_column(exact_duplicates(ids, x, y)),
                _column(near_duplicates(ids, x, threshold=settings.near_threshold))]
    if check == "leakage":
        if test is None:
            notes.append("Train/test leakage was not checked: pass --test with the test data.")
            return []
        say(f"train/test leakage against {len(test):,} test samples")
        result = leakage(ids, x, test.sample_ids, test.x, threshold=settings.near_threshold)
        return [_column(result, own_ids=False)]
    if check == "outliers":
        say("outliers")
        source = {"features": features} if features is not None else {"x": x}
        return [_column(outliers(ids, **source, z_threshold=settings.outlier_z, seed=settings.seed))]
    if check == "label-issues":
        say("label issues (cleanlab, out-of-sample probabilities)")
        source = {"features": features} if features is not None else {"x": x}
        return [_column(label_issues(ids, y, **source, cv_folds=settings.label_folds, seed=settings.seed))]
    if features is None:
        return []  # poison: the note was written when the features were missing
    say("suspected poison: spectral signatures, activation clustering, consensus")
    label_column = next((column for column in done if column.name == "label-issues"), None)
    label_scores = np.asarray(label_column.scores) if label_column is not None else None
    results = poison_audit(ids, features, y, label_scores=label_scores, fp_budget=settings.fp_budget)
    sweep = results["poison-consensus"].summary.get("sweep", {})
    if sweep.get("added"):
        swept = dataset.class_names[sweep["class"]]
        notes.append(f"The poison consensus swept class {swept!r}, whose flags stand out (binomial tail "
                     f"10^{sweep['log10_tail']:.0f}): {sweep['added']} more of its samples lie on its flagged "
                     "cluster's side and are flagged too, outside the false-positive estimate.")
    return [_column(result) for result in results.values()]


def _column(result: AuditResult, *, own_ids: bool = True) -> AuditColumn:
    return AuditColumn(name=result.name, params=result.params, summary=_json_safe(result.summary),
                       scores=[float(s) for s in result.scores], flags=list(result.flags),
                       ids=None if own_ids else list(result.ids))


def _json_safe(value: Any) -> Any:
    """NumPy scalars and arrays inside a summary, as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_audit(folder: str | Path) -> AuditRecord:
    """The record in ``folder/audit.json`` (or the file itself); clear errors for a missing or malformed one."""
    path = Path(folder)
    path = path / "audit.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"no audit record at {path}; run 'bastion data audit DATA --out FOLDER' first")
    try:
        return AuditRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise InputError(f"{path} is not a bastion audit record ({str(error).splitlines()[0]}); "
                         "re-run 'bastion data audit'") from None
