"""Activation clustering: a backdoored class splits into two clusters, and the poison is the small one.

Paper: Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy, Srivastava, "Detecting Backdoor
Attacks on Deep Neural Networks by Activation Clustering", 2018. Per class, reduce the penultimate
features to about 10 dimensions, run k-means with k = 2, and call the smaller cluster poisoned when
it holds less than ``size_threshold`` (default 0.35) of the class; the silhouette score says how
well the two clusters separate.

Choices made here:

- Reduction by PCA (the paper uses ICA). With k-means after it, what matters is that the reduced
  space keeps the directions of largest spread, where a backdoor's offset lives; PCA keeps exactly
  those, is deterministic and fast, while ICA components come unordered, with arbitrary signs and
  scales, and FastICA may not converge on small classes. ``reducer="ica"`` is available.
- Features are whitened first by the pooled within-class covariance (``whiten=True``, see
  :mod:`.spectral`), so the PCA is not dominated by a class's natural large variations.
- A class is suspicious when its smaller cluster is below ``size_threshold`` *and* its two clusters
  separate unusually well. Without the second condition any class with a natural sub-style (a
  crossed 7, a high-top boot) loses that whole style: in our runs on Fashion-MNIST every clean class
  had a smaller cluster under 0.35. "Unusually well" is, by default (``min_silhouette=None``), a
  silhouette more than 2 robust standard deviations (``1.4826 * MAD`` over the classes) above the
  median class's: on Fashion-MNIST backdoored classes stood out so (0.64-0.72 against 0.13-0.47); a
  number sets an absolute silhouette instead. These class verdicts give ``flags_`` (the paper's
  rule); the consensus does not use them, only the continuous scores.

Per-sample outputs (arrays ``(N,)``):
    ``scores_``: the signed robust z-score of ``|r - c_big|^2 - |r - c_small|^2`` (``r`` the reduced
    features, ``c`` the cluster centres), a projection on the axis between the two centres: higher =
    nearer the smaller cluster (more suspicious), continuous in every class.
    ``zscores_``: the same array (the per-class standardised score the consensus reads; it turns
    scores into false-positive rates on the data itself, since these statistics are heavy-tailed).
    ``flags_``: members of the smaller cluster of a suspicious class.
``clusters_`` holds, per class, the smaller cluster's relative size, the silhouette and the verdict;
``silhouette_cut_`` the silhouette a class needed to be suspicious.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from bastion.core.errors import InputError
from bastion.defenses.poison.robust import (
    MAD_TO_SD,
    check_features,
    robust_zscores,
    single_threaded,
    within_class_whitener,
)

Reducer = Literal["pca", "ica"]


class ClassClusters(BaseModel):
    """How one class split under 2-means."""

    model_config = ConfigDict(extra="forbid")

    label: int
    size: int
    smaller_fraction: float
    silhouette: float
    suspicious: bool


class ActivationClustering:
    """Two-means clustering of each class's reduced penultimate features.

    Args:
        n_components: dimensions kept by the reduction, default 10 (fewer when a class is smaller).
        reducer: ``"pca"`` (default) or ``"ica"`` (FastICA, as in the paper).
        size_threshold: a smaller cluster below this fraction of its class is suspicious, default 0.35.
        min_silhouette: and only when the silhouette is at least this; default ``None``: more than 2
            robust standard deviations above the median class silhouette (needs 3 or more classes).
        whiten: whiten with the pooled within-class covariance first, default True.
        silhouette_sample: samples per class used for the silhouette, default 2000 (it costs n^2).
        seed: seeds k-means, the reduction and the silhouette sample, default 0.
    """

    name = "activation-clustering"

    def __init__(
        self,
        n_components: int = 10,
        *,
        reducer: Reducer = "pca",
        size_threshold: float = 0.35,
        min_silhouette: float | None = None,
        whiten: bool = True,
        silhouette_sample: int = 2000,
        seed: int = 0,
    ) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise InputError(f"n_components must be a positive integer, got {n_components!r}")
        if reducer not in ("pca", "ica"):
            raise InputError(f"reducer must be 'pca' or 'ica', got {reducer!r}")
        if not (isinstance(size_threshold, int | float) and 0 < size_threshold <= 0.5):
            raise InputError(f"size_threshold must be in (0, 0.5], got {size_threshold!r}")
        if min_silhouette is not None and not (isinstance(min_silhouette, int | float)
                                                and math.isfinite(min_silhouette) and -1 <= min_silhouette <= 1):
            raise InputError(f"min_silhouette must be in [-1, 1], got {min_silhouette!r}")
        if silhouette_sample < 10:
            raise InputError(f"silhouette_sample must be >= 10, got {silhouette_sample}")
        self.n_components = n_components
        self.reducer = reducer
        self.size_threshold = float(size_threshold)
        self.min_silhouette = None if min_silhouette is None else float(min_silhouette)
        self.whiten = bool(whiten)
        self.silhouette_sample = int(silhouette_sample)
        self.seed = int(seed)

    def get_params(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "reducer": self.reducer, "size_threshold": self.size_threshold,
                "min_silhouette": self.min_silhouette, "whiten": self.whiten,
                "silhouette_sample": self.silhouette_sample, "seed": self.seed}

    def fit(self, features: np.ndarray, labels: np.ndarray) -> ActivationClustering:
        """Cluster each class of ``features`` ``(N, D)`` (classes from ``labels`` ``(N,)``); returns self."""
        f, y = check_features(features, labels)
        statistic = np.zeros(len(y))
        in_smaller = np.zeros(len(y), dtype=bool)
        splits = []
        with single_threaded():
            whitener = within_class_whitener(f, y) if self.whiten else np.eye(f.shape[1])
            for label in np.unique(y):
                rows = np.flatnonzero(y == label)
                statistic[rows], in_smaller[rows], fraction, silhouette = self._cluster_class(f[rows] @ whitener)
                splits.append((int(label), len(rows), fraction, silhouette))
        cut = self._silhouette_cut([s[3] for s in splits])
        self.clusters_: list[ClassClusters] = []
        self.flags_ = np.zeros(len(y), dtype=bool)
        for label, size, fraction, silhouette in splits:
            suspicious = size >= 4 and fraction < self.size_threshold and silhouette >= cut
            self.clusters_.append(ClassClusters(label=label, size=size, smaller_fraction=fraction,
                                                silhouette=silhouette, suspicious=suspicious))
            if suspicious:
                self.flags_ |= (y == label) & in_smaller
        self.silhouette_cut_ = cut
        self.scores_ = robust_zscores(statistic, y)
        self.zscores_ = self.scores_
        return self

    def _silhouette_cut(self, silhouettes: list[float]) -> float:
        if self.min_silhouette is not None:
            return self.min_silhouette
        if len(silhouettes) < 3:
            return math.inf  # no classes to compare with: nothing is unusual
        values = np.asarray(silhouettes)
        centre = float(np.median(values))
        spread = MAD_TO_SD * float(np.median(np.abs(values - centre)))
        return centre + 2.0 * max(spread, 0.01)

    def _cluster_class(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Per sample the centre-axis statistic and smaller-cluster membership; the smaller fraction and silhouette."""
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        n = len(points)
        if n < 4:
            return np.zeros(n), np.zeros(n, dtype=bool), 0.5, 0.0
        reduced = self._reduce(points)
        assignment = KMeans(n_clusters=2, n_init=3, random_state=self.seed).fit_predict(reduced)
        counts = np.bincount(assignment, minlength=2)
        smaller = int(np.argmin(counts))
        if counts[smaller] == 0:
            return np.zeros(n), np.zeros(n, dtype=bool), 0.0, 0.0
        centre_small = reduced[assignment == smaller].mean(axis=0)
        centre_big = reduced[assignment != smaller].mean(axis=0)
        statistic = ((reduced - centre_big) ** 2).sum(1) - ((reduced - centre_small) ** 2).sum(1)
        sample = min(n, self.silhouette_sample)
        silhouette = float(silhouette_score(reduced, assignment, sample_size=sample, random_state=self.seed))
        return statistic, assignment == smaller, float(counts[smaller] / n), silhouette

    def _reduce(self, points: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA, FastICA

        components = max(1, min(self.n_components, points.shape[1], len(points) - 1))
        if self.reducer == "ica":
            return FastICA(n_components=components, random_state=self.seed, max_iter=500).fit_transform(points)
        return PCA(n_components=components, random_state=self.seed).fit_transform(points)
