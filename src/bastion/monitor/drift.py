"""Drift monitoring of a served model's traffic: do the current requests come from the same distribution
as a reference window? ``drift_report`` answers with four tests (see ``bastion.monitor.two_sample``):

- inputs, per feature: two-sample Kolmogorov–Smirnov, Bonferroni-corrected over the features;
- inputs, jointly: kernel MMD with a permutation p-value;
- predicted classes: chi-squared test of homogeneity;
- confidence (max probability): population stability index.

Example::

    report = drift_report(reference_window, current_window)
    if report.drifted:
        logger.warning("; ".join(report.alerts))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import scipy
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion import __version__
from bastion.core.errors import InputError
from bastion.monitor.two_sample import (
    ClassDrift,
    FeatureDrift,
    KernelDrift,
    StabilityIndex,
    chi2_drift,
    ks_drift,
    mmd_drift,
    psi,
)

__all__ = [
    "DriftReport", "DriftTest", "DriftThresholds", "TrafficWindow", "WindowSummary", "chi2_drift", "drift_report",
    "ks_drift", "mmd_drift", "psi",
]


@dataclass(frozen=True, eq=False)
class TrafficWindow:
    """What a model saw and said over a stretch of traffic.

    Attributes:
        inputs: ``(N, D)`` float32, each input flattened.
        confidence: ``(N,)`` the model's confidence, its largest class probability.
        predicted: ``(N,)`` int64, the predicted class (argmax of the probabilities).
        num_classes: ``C``, the number of classes of the model.
        label: what the window is, for messages and reports (e.g. its time range).
        sample_shape: the shape of one input before flattening (``(1, 28, 28)``); ``None``: just ``(D,)``.
        model: the served model's name, when known.
        requests: how many logged requests the instances came from, when known (a request may hold several).

    Raises:
        InputError: the arrays disagree in length, are not ``(N, D)``/``(N,)``, or a class is out of range.
    """

    inputs: np.ndarray
    confidence: np.ndarray
    predicted: np.ndarray
    num_classes: int
    label: str
    sample_shape: tuple[int, ...] | None = None
    model: str | None = None
    requests: int | None = None

    def __post_init__(self) -> None:
        inputs = np.asarray(self.inputs, dtype=np.float32)
        confidence = np.asarray(self.confidence, dtype=np.float64)
        predicted = np.asarray(self.predicted)
        where = f"window {self.label!r}"
        if inputs.ndim != 2 or confidence.ndim != 1 or predicted.ndim != 1:
            raise InputError(f"{where}: inputs must be (N, D), confidence and predicted (N,); got shapes "
                             f"{inputs.shape}, {confidence.shape}, {predicted.shape}")
        if not len(inputs) == len(confidence) == len(predicted):
            raise InputError(f"{where}: {len(inputs)} inputs, {len(confidence)} confidences and {len(predicted)} "
                             "predictions: give one of each per instance")
        if predicted.size and not np.issubdtype(predicted.dtype, np.integer):
            raise InputError(f"{where}: predicted must hold integer class indices, got dtype {predicted.dtype}")
        if self.num_classes < 2:
            raise InputError(f"{where}: num_classes must be at least 2, got {self.num_classes}")
        if predicted.size and (predicted.min() < 0 or predicted.max() >= self.num_classes):
            raise InputError(f"{where}: predicted classes must lie in [0, {self.num_classes}), got "
                             f"{predicted.min()}..{predicted.max()}")
        if self.sample_shape is not None and int(np.prod(self.sample_shape)) != inputs.shape[1]:
            raise InputError(f"{where}: sample_shape {tuple(self.sample_shape)} does not hold "
                             f"{inputs.shape[1]} features")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "predicted", predicted.astype(np.int64))

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def num_features(self) -> int:
        """``D``, the number of features of a flattened input."""
        return self.inputs.shape[1]


# --- the report on two windows -----------------------------------------------------------------------


class DriftThresholds(BaseModel):
    """What counts as drift, and how hard each test looks.

    Attributes:
        alpha: significance level of the KS (family-wise), chi-squared, MMD and PSI tests (default 0.01).
            With four tests the chance of a false alert on unchanged traffic is at most ``4 * alpha``.
        psi_watch: confidence PSI noted as worth watching (default 0.1). psi_alert: PSI that alerts (0.25),
            unless its permutation p-value says the windows are too small to tell (p >= alpha).
        psi_bins: quantile bins of the PSI (default 10).
        min_samples: instances each window needs at least (default 20).
        permutations: permutations of the MMD and PSI tests (default 200); at least ``1 / alpha``.
        max_points: MMD points per window (default 1000).
        seed: seeds the MMD subsampling and the permutations (default 0).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=0.01, gt=0, lt=1)
    psi_watch: float = Field(default=0.1, ge=0)
    psi_alert: float = Field(default=0.25, ge=0)
    psi_bins: int = Field(default=10, ge=2)
    min_samples: int = Field(default=20, ge=2)
    permutations: int = Field(default=200, ge=1)
    max_points: int = Field(default=1000, ge=2)
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_watch > self.psi_alert:
            raise ValueError(f"psi_watch ({self.psi_watch}) must not exceed psi_alert ({self.psi_alert})")
        if self.permutations + 1 <= 1 / self.alpha:
            raise ValueError(f"{self.permutations} permutations cannot give a p-value below alpha={self.alpha}: use "
                             f"at least {int(1 / self.alpha)}")
        return self


class DriftTest(BaseModel):
    """One test of a drift report: ``alert`` when ``p_value`` is below ``threshold`` (PSI: ``statistic``
    at or above ``threshold`` and ``p_value`` below the thresholds' ``alpha``)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["ks", "chi2", "mmd", "psi"]
    title: str = Field(description="what it compares, in words")
    statistic: float
    p_value: float | None = Field(description="for the PSI: the share of permuted windows reaching it")
    threshold: float
    alert: bool
    detail: str


class WindowSummary(BaseModel):
    """A window in a drift report: its label, size and output histogram."""

    model_config = ConfigDict(extra="forbid")

    label: str
    count: int = Field(description="instances (a request may hold several)")
    num_features: int
    sample_shape: list[int] | None
    mean_confidence: float
    class_counts: list[int]


class DriftReport(BaseModel):
    """The evidence record of a drift check between two traffic windows (JSON is canonical)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["drift"] = "drift"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str = __version__
    library_versions: dict[str, str] = Field(
        default_factory=lambda: {"numpy": np.__version__, "scipy": scipy.__version__})
    model: str | None
    reference: WindowSummary
    current: WindowSummary
    thresholds: DriftThresholds
    tests: list[DriftTest]
    feature_statistics: list[float] = Field(description="KS distance per input feature (D,)")
    drifted_features: list[int] = Field(description="features whose corrected KS p-value is below alpha, most "
                                                    "changed first")
    alerts: list[str] = Field(description="one line per test that alerted")
    notes: list[str] = Field(default_factory=list, description="worth watching, below the alert level")

    @property
    def drifted(self) -> bool:
        """Whether any test alerted."""
        return bool(self.alerts)


def drift_report(reference: TrafficWindow, current: TrafficWindow, *,
                 thresholds: DriftThresholds = DriftThresholds()) -> DriftReport:
    """Run every drift test between two windows of traffic.

    Inputs: per-feature KS over all ``D`` flattened features (784 for a 28x28 image), Bonferroni-corrected
    over the ``D`` tests, and MMD on whole inputs. Outputs: chi-squared on the predicted classes, PSI on
    the confidence.

    Raises:
        InputError: a window has fewer than ``thresholds.min_samples`` instances, or the windows differ in
            feature count, input shape or number of classes.
    """
    _comparable(reference, current, thresholds.min_samples)
    t = thresholds
    features = ks_drift(reference.inputs, current.inputs, alpha=t.alpha)
    classes = chi2_drift(reference.predicted, current.predicted, num_classes=reference.num_classes, alpha=t.alpha)
    kernel = mmd_drift(reference.inputs, current.inputs, permutations=t.permutations, alpha=t.alpha, seed=t.seed,
                       max_points=t.max_points)
    stability = psi(reference.confidence, current.confidence, bins=t.psi_bins, watch=t.psi_watch, alert=t.psi_alert,
                    permutations=t.permutations, seed=t.seed)
    tests = [_ks_test(features), _chi2_test(classes), _mmd_test(kernel),
             _psi_test(stability, reference.confidence.mean(), current.confidence.mean(), t.alpha)]
    return DriftReport(
        model=reference.model or current.model, reference=_summary(reference), current=_summary(current),
        thresholds=t, tests=tests, feature_statistics=[float(s) for s in features.statistics],
        drifted_features=features.drifted, alerts=[f"{test.title}: {test.detail}" for test in tests if test.alert],
        notes=_psi_notes(stability, tests[3], t.alpha))


def _comparable(reference: TrafficWindow, current: TrafficWindow, min_samples: int) -> None:
    for role, window in (("reference", reference), ("current", current)):
        if len(window) < min_samples:
            raise InputError(_too_small(role, window, reference, current, min_samples))
    if reference.num_features != current.num_features:
        raise InputError(f"the reference window has {reference.num_features} features per input, the current "
                         f"one {current.num_features}: compare traffic of the same model")
    if None not in (reference.sample_shape, current.sample_shape) and reference.sample_shape != current.sample_shape:
        raise InputError(f"the reference inputs have shape {reference.sample_shape}, the current ones "
                         f"{current.sample_shape}: compare traffic of the same model")
    if reference.num_classes != current.num_classes:
        raise InputError(f"the reference window has {reference.num_classes} classes, the current one "
                         f"{current.num_classes}: compare traffic of the same model")


def _too_small(role: str, window: TrafficWindow, reference: TrafficWindow, current: TrafficWindow,
               min_samples: int) -> str:
    """Why ``window`` is too small, and (for windows read from the audit log) how many requests would do."""
    message = (f"the {role} window {window.label!r} has {len(window)} instance(s); drift tests need at least "
               f"{min_samples} in each window")
    if window.requests is None or not len(window):
        return f"{message}: widen its time range or take more records"
    per_request = len(window) / window.requests
    needed = 2 * math.ceil(min_samples / per_request)
    held = (reference.requests or 0) + (current.requests or 0)
    return (f"{message}, so at least {needed} logged requests in all at {per_request:.3g} instance(s) per request "
            f"(these windows hold {held}): log more traffic, or choose windows of at least "
            f"{needed // 2} requests each (--reference-first N --current-last M, or wider time ranges)")


def _summary(window: TrafficWindow) -> WindowSummary:
    return WindowSummary(
        label=window.label, count=len(window), num_features=window.num_features,
        sample_shape=list(window.sample_shape) if window.sample_shape is not None else None,
        mean_confidence=float(window.confidence.mean()),
        class_counts=[int(c) for c in np.bincount(window.predicted, minlength=window.num_classes)])


def _ks_test(result: FeatureDrift) -> DriftTest:
    drifted = result.drifted
    detail = (f"{len(drifted)} of {len(result.statistics)} features differ (smallest Bonferroni-corrected "
              f"p = {result.min_p_value:.3g})")
    if drifted:
        detail += f"; most changed: feature {drifted[0]} (KS distance {result.statistics[drifted[0]]:.3f})"
    return DriftTest(name="ks", title="inputs, per feature (Kolmogorov-Smirnov)",
                     statistic=float(result.statistics.max()), p_value=result.min_p_value, threshold=result.alpha,
                     alert=result.drift, detail=detail)


def _chi2_test(result: ClassDrift) -> DriftTest:
    reference = np.asarray(result.reference_counts) / sum(result.reference_counts)
    current = np.asarray(result.current_counts) / sum(result.current_counts)
    moved = int(np.argmax(np.abs(current - reference)))
    detail = (f"chi2 = {result.statistic:.3g} on {result.dof} degrees of freedom, p = {result.p_value:.3g}; "
              f"class {moved} went from {reference[moved]:.1%} to {current[moved]:.1%} of predictions")
    return DriftTest(name="chi2", title="predicted classes (chi-squared)", statistic=result.statistic,
                     p_value=result.p_value, threshold=result.alpha, alert=result.drift, detail=detail)


def _mmd_test(result: KernelDrift) -> DriftTest:
    detail = (f"MMD² = {result.statistic:.3g}, permutation p = {result.p_value:.3g} ({result.permutations} "
              f"permutations, {result.reference_points} + {result.current_points} points, RBF bandwidth "
              f"{result.bandwidth:.3g})")
    return DriftTest(name="mmd", title="inputs, jointly (kernel MMD)", statistic=result.statistic,
                     p_value=result.p_value, threshold=result.alpha, alert=result.drift, detail=detail)


def _psi_notes(result: StabilityIndex, test: DriftTest, alpha: float) -> list[str]:
    """A note for a PSI worth watching (beyond noise), or at the alert level but within the noise."""
    noteworthy = result.level == "watch" and result.p_value < alpha or result.level == "alert"
    return [f"{test.title}: {test.detail}"] if noteworthy and not test.alert else []


def _psi_test(result: StabilityIndex, reference_mean: float, current_mean: float, alpha: float) -> DriftTest:
    """Alerts at or above the alert level, unless sampling noise explains the index (p >= alpha)."""
    noise = f", but within the noise of windows this small: p = {result.p_value:.3g}" if result.p_value >= alpha else ""
    detail = (f"PSI = {result.value:.3g} ({result.level} level{noise}; watch at {result.watch:g}, alert at "
              f"{result.alert:g}); mean confidence {reference_mean:.3f} -> {current_mean:.3f}")
    return DriftTest(name="psi", title="confidence (population stability index)", statistic=result.value,
                     p_value=result.p_value, threshold=result.alert,
                     alert=result.level == "alert" and result.p_value < alpha, detail=detail)
