"""Outlier audit: samples far from every other sample, in model-feature space or raw input space.

Score (higher = more suspicious): with ``method="knn"`` (default) the mean Euclidean distance to the
``k`` nearest other samples (features standardised per dimension first), a density measure that
needs no model of the data; with ``method="isolation-forest"`` the negated IsolationForest
``score_samples`` (higher = isolated in fewer random splits).

Flags: the top ``contamination`` fraction when that is given; otherwise every sample whose
log-score lies more than ``z_threshold`` (default 3.5) robust standard deviations (``1.4826 * MAD``)
above the median log-score. Logs, because distances are skewed; the MAD, because the outliers must
not set their own yardstick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from bastion.core.errors import InputError
from bastion.data.audit.inputs import ArrayLike, check_ids, sample_vectors
from bastion.data.audit.result import AuditResult
from bastion.defenses.poison.robust import MAD_TO_SD

Method = Literal["knn", "isolation-forest"]


def outliers(
    ids: Sequence[str],
    x: ArrayLike | None = None,
    *,
    features: ArrayLike | None = None,
    method: Method = "knn",
    k: int = 10,
    contamination: float | None = None,
    z_threshold: float = 3.5,
    max_side: int = 16,
    seed: int = 0,
) -> AuditResult:
    """Score every sample by how isolated it is and flag the extreme ones.

    Args:
        ids: ``N`` sample ids.
        x: ``(N, ...)`` samples (used when ``features`` is not given; images averaged down to at most
            ``max_side`` on a side, default 16).
        features: ``(N, D)`` vectors, e.g. a model's penultimate features (preferred when available).
        method: ``"knn"`` (default) or ``"isolation-forest"``.
        k: neighbours for ``"knn"``, default 10 (fewer when there are fewer samples).
        contamination: flag exactly this top fraction, in (0, 0.5]; default: the robust threshold.
        z_threshold: robust z-score of the log-score above which a sample is flagged, default 3.5.
        seed: seeds the isolation forest, default 0.

    Returns:
        An :class:`AuditResult` named ``outliers``; ``summary`` holds the score threshold applied.
    """
    ids = check_ids(ids)
    if method not in ("knn", "isolation-forest"):
        raise InputError(f"method must be 'knn' or 'isolation-forest', got {method!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if contamination is not None and not (isinstance(contamination, int | float) and 0 < contamination <= 0.5):
        raise InputError(f"contamination must be a fraction in (0, 0.5], got {contamination!r}")
    if not (isinstance(z_threshold, int | float) and math.isfinite(z_threshold) and z_threshold > 0):
        raise InputError(f"z_threshold must be a positive number, got {z_threshold!r}")
    vectors = sample_vectors(x, features, len(ids), max_side=max_side)
    if len(ids) < 3:
        raise InputError(f"outlier scores need at least 3 samples, got {len(ids)}")
    scores = _knn_scores(vectors, k) if method == "knn" else _forest_scores(vectors, seed)
    threshold = _threshold(scores, contamination, z_threshold)
    flags = scores >= threshold
    params = {"method": method, "k": k, "contamination": contamination, "z_threshold": z_threshold,
              "max_side": max_side, "seed": seed}
    summary = {"threshold": float(threshold), "flagged": int(flags.sum()),
               "vectors": "features" if features is not None else "raw inputs"}
    return AuditResult(name="outliers", params=params, ids=ids, scores=scores.tolist(), flags=flags.tolist(),
                       summary=summary)


def _knn_scores(vectors: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    spread = vectors.std(axis=0)
    standard = (vectors - vectors.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    neighbours = min(k, len(vectors) - 1)
    distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(standard).kneighbors(standard)
    return distances[:, 1:].mean(axis=1)  # column 0 is the sample itself


def _forest_scores(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(vectors)
    return -forest.score_samples(vectors)


def _threshold(scores: np.ndarray, contamination: float | None, z_threshold: float) -> float:
    """The smallest flagged score: the top ``contamination`` fraction, or the robust cut on log-scores."""
    if contamination is not None:
        count = max(1, int(round(contamination * len(scores))))
        return float(np.sort(scores)[-count])
    offset = 1e-6 * (float(np.median(np.abs(scores))) or 1.0)
    shift = min(0.0, float(scores.min()))  # isolation scores are positive, distances >= 0; keep logs defined
    logs = np.log(scores - shift + offset)
    centre = float(np.median(logs))
    scale = MAD_TO_SD * float(np.median(np.abs(logs - centre))) or float(np.std(logs)) or 1.0
    return float(np.exp(centre + z_threshold * scale) - offset + shift)
