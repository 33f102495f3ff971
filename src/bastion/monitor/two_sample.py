"""Two-sample drift tests on plain arrays: is ``current`` drawn from the same distribution as ``reference``?

- ``ks_drift``: two-sample Kolmogorov–Smirnov per feature, Bonferroni-corrected over the features.
- ``chi2_drift``: chi-squared test of homogeneity of two class histograms.
- ``mmd_drift``: kernel maximum mean discrepancy (RBF kernel, median-heuristic bandwidth) with a
  permutation p-value; it sees joint changes that no single feature shows.
- ``psi``: population stability index of a 1-D score (a model's confidence).

``bastion.monitor.drift.drift_report`` runs them all on two windows of a served model's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from bastion.core.errors import InputError

#: Share given to an empty PSI bin, so the index stays finite (log of 0 otherwise).
PSI_EPSILON = 1e-4


# --- the tests ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureDrift:
    """Result of ``ks_drift``: ``statistics`` and Bonferroni-corrected ``p_values``, both ``(D,)``."""

    statistics: np.ndarray
    p_values: np.ndarray
    alpha: float

    @property
    def drifted(self) -> list[int]:
        """Indices of the features whose corrected p-value is below ``alpha``, most changed first."""
        hits = np.flatnonzero(self.p_values < self.alpha)
        return [int(i) for i in hits[np.argsort(-self.statistics[hits], kind="stable")]]

    @property
    def min_p_value(self) -> float:
        """The smallest corrected p-value over the features."""
        return float(self.p_values.min())

    @property
    def drift(self) -> bool:
        return self.min_p_value < self.alpha


def ks_drift(reference: np.ndarray, current: np.ndarray, *, alpha: float = 0.01) -> FeatureDrift:
    """Two-sample Kolmogorov–Smirnov test on every feature.

    The ``D`` p-values are Bonferroni-corrected (multiplied by ``D``, capped at 1): the chance that any
    feature is flagged when nothing changed stays below ``alpha``. Conservative on correlated features
    (pixels), which is the side to err on for an alarm that wakes someone.

    Args:
        reference: ``(N, D)`` inputs of the reference window.
        current: ``(M, D)`` inputs of the current window.
        alpha: family-wise significance level (default 0.01).
    """
    _check_alpha(alpha)
    x, y = _matrix(reference, "reference"), _matrix(current, "current")
    _same_features(x, y)
    result = stats.ks_2samp(x, y, axis=0)
    statistics = np.atleast_1d(np.asarray(result.statistic, dtype=np.float64))
    raw = np.nan_to_num(np.atleast_1d(np.asarray(result.pvalue, dtype=np.float64)), nan=1.0)
    return FeatureDrift(statistics, np.minimum(raw * x.shape[1], 1.0), alpha)


@dataclass(frozen=True)
class ClassDrift:
    """Result of ``chi2_drift``: the chi-squared statistic, its p-value, and both class histograms."""

    statistic: float
    p_value: float
    dof: int
    reference_counts: tuple[int, ...]
    current_counts: tuple[int, ...]
    alpha: float

    @property
    def drift(self) -> bool:
        return self.p_value < self.alpha


def chi2_drift(reference_labels: np.ndarray, current_labels: np.ndarray, *, num_classes: int,
               alpha: float = 0.01) -> ClassDrift:
    """Chi-squared test of homogeneity on the predicted-class histograms of two windows.

    Classes predicted in neither window carry no information and are left out (they would divide by a
    zero expected count); a class predicted in one window only stays in, as the strong signal it is.
    With fewer than two classes left, both windows predict one class: no drift (statistic 0, p 1).
    The chi-squared law is an approximation that wants about 5 expected predictions per class; for rare
    classes in small windows the p-value is rough.

    Args:
        reference_labels: ``(N,)`` predicted classes in ``[0, num_classes)``.
        current_labels: ``(M,)`` predicted classes.
        num_classes: ``C``.
        alpha: significance level (default 0.01).
    """
    _check_alpha(alpha)
    counts = np.stack([_histogram(reference_labels, num_classes, "reference"),
                       _histogram(current_labels, num_classes, "current")])
    table = counts[:, counts.sum(axis=0) > 0].astype(np.float64)
    statistic, p_value, dof = 0.0, 1.0, 0
    if table.shape[1] >= 2:
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        statistic = float(((table - expected) ** 2 / expected).sum())
        dof = table.shape[1] - 1
        p_value = float(stats.chi2.sf(statistic, dof))
    return ClassDrift(statistic, p_value, dof, tuple(int(c) for c in counts[0]), tuple(int(c) for c in counts[1]),
                      alpha)


@dataclass(frozen=True)
class KernelDrift:
    """Result of ``mmd_drift``: unbiased MMD², its permutation p-value, the RBF bandwidth and points used."""

    statistic: float
    p_value: float
    bandwidth: float
    permutations: int
    reference_points: int
    current_points: int
    alpha: float

    @property
    def drift(self) -> bool:
        return self.p_value < self.alpha


def mmd_drift(reference: np.ndarray, current: np.ndarray, *, permutations: int = 200, alpha: float = 0.01,
              seed: int = 0, max_points: int = 1000) -> KernelDrift:
    """Maximum mean discrepancy between two samples, with a permutation test.

    Kernel ``exp(-|a - b|² / (2 σ²))`` with ``σ`` the median distance between pooled points (the median
    heuristic). The unbiased MMD² of the windows is compared with its value under ``permutations`` random
    re-splits of the pooled points; p = (1 + re-splits at least as large) / (1 + permutations).

    Args:
        reference: ``(N, D)``; at most ``max_points`` of them are drawn at random (default 1000).
        current: ``(M, D)``; likewise.
        permutations: re-splits (default 200); at least ``1 / alpha`` so the test can ever fire.
        alpha: significance level (default 0.01).
        seed: seeds the subsampling and the permutations: the same seed gives the same result.
        max_points: cap per window; memory and time grow with ``(2 * max_points)²``.
    """
    _check_alpha(alpha)
    if permutations + 1 <= 1 / alpha:
        raise InputError(f"{permutations} permutations cannot give a p-value below alpha={alpha}: use at "
                         f"least {int(np.floor(1 / alpha))}")
    if max_points < 2:
        raise InputError(f"max_points must be at least 2, got {max_points}")
    x, y = _matrix(reference, "reference"), _matrix(current, "current")
    _same_features(x, y)
    rng = np.random.default_rng(seed)
    x, y = _subsample(x, max_points, rng), _subsample(y, max_points, rng)
    pooled = np.concatenate([x, y])
    squared = _squared_distances(pooled)
    bandwidth = _median_bandwidth(squared)
    kernel = np.exp(-squared / (2 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out each point's match with itself
    splits = np.zeros((permutations + 1, len(pooled)))
    splits[0, : len(x)] = 1.0
    for row in range(1, permutations + 1):
        splits[row, rng.permutation(len(pooled))[: len(x)]] = 1.0
    values = _mmd2(kernel, splits, len(x), len(y))
    p_value = float((1 + np.sum(values[1:] >= values[0])) / (1 + permutations))
    return KernelDrift(float(values[0]), p_value, bandwidth, permutations, len(x), len(y), alpha)


@dataclass(frozen=True, eq=False)
class StabilityIndex:
    """Result of ``psi``: the index, the inner bin edges ``(B-1,)``, each window's share per bin ``(B,)``,
    and ``p_value``, how often sampling noise alone reaches the index (see ``psi``)."""

    value: float
    edges: np.ndarray
    reference_share: np.ndarray
    current_share: np.ndarray
    p_value: float
    watch: float
    alert: float

    @property
    def level(self) -> Literal["stable", "watch", "alert"]:
        """``alert`` at or above ``alert``, ``watch`` at or above ``watch``, else ``stable``."""
        return "alert" if self.value >= self.alert else "watch" if self.value >= self.watch else "stable"


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10, watch: float = 0.1, alert: float = 0.25,
        permutations: int = 200, seed: int = 0) -> StabilityIndex:
    """Population stability index ``Σ (c - r) ln(c / r)`` of a 1-D score over quantile bins.

    Bin edges are the reference's quantiles, so each bin holds about ``1 / bins`` of it; repeated
    quantiles (a score that is often exactly 1) merge bins. Empty bins count as ``PSI_EPSILON``.

    The index is biased upwards in small windows: unchanged traffic gives about ``(B - 1)(1/N + 1/M)``
    (0.9 for two windows of 20 in 10 bins), more with empty bins. ``p_value`` says how likely that is:
    the share of ``permutations`` random re-splits of the pooled scores whose index is at least as large.

    Args:
        reference: ``(N,)`` scores, e.g. the model's confidence (max probability).
        current: ``(M,)`` scores.
        bins: number of quantile bins (default 10).
        watch: level worth watching (default 0.1). alert: level that is drift (default 0.25).
        permutations: re-splits for ``p_value`` (default 200). seed: seeds them (default 0).
    """
    if bins < 2:
        raise InputError(f"psi needs at least 2 bins, got {bins}")
    if not 0 <= watch <= alert:
        raise InputError(f"psi thresholds must satisfy 0 <= watch <= alert, got watch={watch}, alert={alert}")
    if permutations < 1:
        raise InputError(f"psi needs at least 1 permutation, got {permutations}")
    r, c = _vector(reference, "reference"), _vector(current, "current")
    edges, reference_share, current_share, value = _stability(r, c, bins)
    pooled = np.concatenate([r, c])
    rng = np.random.default_rng(seed)
    null = [_stability(*np.split(rng.permutation(pooled), [len(r)]), bins)[3] for _ in range(permutations)]
    p_value = float((1 + np.sum(np.asarray(null) >= value)) / (1 + permutations))
    return StabilityIndex(value, edges, reference_share, current_share, p_value, watch, alert)


def _stability(reference: np.ndarray, current: np.ndarray,
               bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Inner edges ``(B-1,)``, both windows' shares ``(B,)`` and the PSI, with bins from ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    reference_share, current_share = _shares(reference, edges), _shares(current, edges)
    value = float(np.sum((current_share - reference_share) * np.log(current_share / reference_share)))
    return edges, reference_share, current_share, value


# --- helpers --------------------------------------------------------------------------------------------


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def _matrix(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"the {name} inputs must be (N, D), got shape {array.shape}: flatten each input")
    return _finite(array, name)


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InputError(f"the {name} scores must be (N,), got shape {array.shape}")
    return _finite(array, name)


def _finite(array: np.ndarray, name: str) -> np.ndarray:
    if len(array) < 2:
        raise InputError(f"the {name} window has {len(array)} sample(s); a drift test needs at least 2")
    if not np.isfinite(array).all():
        raise InputError(f"the {name} window holds NaN or infinite values: drop or fix those samples")
    return array


def _same_features(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise InputError(f"the reference window has {x.shape[1]} features, the current one {y.shape[1]}: compare "
                         "traffic of the same model")


def _histogram(labels: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise InputError(f"the {name} labels must be a non-empty (N,) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() >= num_classes:
        raise InputError(f"the {name} labels must be integer classes in [0, {num_classes})")
    return np.bincount(array, minlength=num_classes)


def _subsample(points: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= limit:
        return points
    return points[np.sort(rng.choice(len(points), size=limit, replace=False))]


def _squared_distances(points: np.ndarray) -> np.ndarray:
    """``(P, P)`` squared Euclidean distances between the rows of ``points``."""
    norms = np.einsum("ij,ij->i", points, points)
    squared = norms[:, None] + norms[None, :] - 2 * points @ points.T
    np.fill_diagonal(squared, 0.0)
    return np.maximum(squared, 0.0)


def _median_bandwidth(squared: np.ndarray) -> float:
    """Median distance between distinct pooled points (1.0 when every point is the same)."""
    upper = squared[np.triu_indices_from(squared, k=1)]
    positive = upper[upper > 0]
    return float(np.sqrt(np.median(positive))) if positive.size else 1.0


def _mmd2(kernel: np.ndarray, splits: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD² for each row of ``splits`` ``(S, n + m)``, 1 on the points playing the reference.

    ``kernel`` has a zero diagonal. With sums over the kernel's blocks, ``S_yy = total - S_xx - 2 S_xy``.
    """
    s_xx = np.einsum("si,si->s", splits @ kernel, splits)
    s_xy = splits @ kernel.sum(axis=1) - s_xx
    s_yy = kernel.sum() - s_xx - 2 * s_xy
    return s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2 * s_xy / (n * m)


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` per bin (``len(edges) + 1`` bins, a value on an edge goes up), at least PSI_EPSILON."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / len(values), PSI_EPSILON)
