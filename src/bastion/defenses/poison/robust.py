"""Robust per-class statistics shared by the poison detectors.

Poison hides inside a class (a dirty-label backdoor's samples carry the target label), so every
statistic here is computed class by class, from the class's *bulk*: the part of the class a
minority of poisoned samples cannot move. Medians and MADs give centres and scales; a few trimming
rounds drop far points before the final estimate. A poisoned minority below half of a class leaves
the bulk clean.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from bastion.core.errors import InputError

#: Consistency constant: ``1.4826 * MAD`` estimates the standard deviation of a normal sample.
MAD_TO_SD = 1.4826
#: Points further than this many robust standard deviations are left out when re-estimating.
TRIM_Z = 3.5


def single_threaded() -> Any:
    """A context in which BLAS and OpenMP run one thread.

    The per-class problems here (k-means on a few thousand 10-d points, D x D Gram matrices) are
    too small to gain from threads, and on a busy machine oversubscribed thread pools made them up
    to 50 times slower in our measurements.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def check_features(features: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """``features`` as float64 ``(N, D)`` and ``labels`` as int64 ``(N,)``, checked."""
    f = np.asarray(features)
    y = np.asarray(labels)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise InputError(f"features must be a non-empty (N, D) array, got shape {f.shape}")
    if y.ndim != 1 or len(y) != len(f):
        raise InputError(f"labels must have shape (N,) with N = {len(f)} (one per feature row), got shape {y.shape}")
    if not np.issubdtype(f.dtype, np.number) or not np.isfinite(f).all():
        raise InputError("features must be finite numbers (no NaN or infinity)")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got dtype {y.dtype}")
    return f.astype(np.float64), y.astype(np.int64)


def robust_location_scale(values: np.ndarray, *, rounds: int = 3) -> tuple[float, float]:
    """Median and ``1.4826 * MAD`` of ``values``, re-estimated ``rounds`` times without points beyond
    ``TRIM_Z`` robust standard deviations. A zero scale falls back to the standard deviation (or 1)."""
    kept = values
    centre, scale = 0.0, 1.0
    for _ in range(rounds):
        centre = float(np.median(kept))
        scale = MAD_TO_SD * float(np.median(np.abs(kept - centre)))
        if scale <= 0:
            scale = float(np.std(kept)) or 1.0
        inside = np.abs(values - centre) <= TRIM_Z * scale
        if inside.sum() < max(3, len(values) // 2) or inside.sum() == len(kept):
            break
        kept = values[inside]
    return centre, scale


def robust_zscores(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(N,)`` robust z-scores ``(v - median) / (1.4826 * MAD)``, centre and scale estimated per group."""
    z = np.zeros(len(values))
    for group in np.unique(groups):
        rows = groups == group
        centre, scale = robust_location_scale(values[rows])
        z[rows] = (values[rows] - centre) / scale
    return z


def robust_centre(points: np.ndarray, *, keep: float = 0.5, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A centre of ``points`` ``(n, D)`` that a minority cannot drag, and the mask of the bulk around it.

    Starting from the coordinate-wise median, the centre is moved ``rounds`` times to the mean of the
    ``keep`` fraction of points nearest to it (Euclidean: pass whitened points).
    """
    centre = np.median(points, axis=0)
    bulk = np.ones(len(points), dtype=bool)
    count = max(2, int(np.ceil(keep * len(points))))
    for _ in range(rounds):
        distance = np.einsum("ij,ij->i", points - centre, points - centre)
        bulk = np.zeros(len(points), dtype=bool)
        bulk[np.argsort(distance, kind="stable")[:count]] = True
        centre = points[bulk].mean(axis=0)
    return centre, bulk


_WHITENER_CACHE: dict[tuple[str, float], np.ndarray] = {}


def within_class_whitener(features: np.ndarray, labels: np.ndarray, *, keep: float = 0.5) -> np.ndarray:
    """:func:`compute_whitener`, remembered for the last data seen (detectors run in turn on the same features)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (np.ascontiguousarray(features), np.ascontiguousarray(labels)):
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    key = (digest.hexdigest(), float(keep))
    if key not in _WHITENER_CACHE:
        _WHITENER_CACHE.clear()
        _WHITENER_CACHE[key] = compute_whitener(features, labels, keep=keep)
    return _WHITENER_CACHE[key]


def compute_whitener(features: np.ndarray, labels: np.ndarray, *, keep: float = 0.5) -> np.ndarray:
    """A ``(D, D)`` matrix ``W`` such that ``features @ W`` has about identity within-class covariance.

    The covariance is pooled over classes from each class's bulk (the ``keep`` fraction nearest its
    robust centre, so a poisoned minority does not inflate it) and shrunk towards a multiple of the
    identity (Ledoit-Wolf), which keeps it invertible when ``D`` is large next to the class sizes.
    """
    from sklearn.covariance import ledoit_wolf

    plain = _pooled_deviations(features, labels, None, keep)
    first = _inverse_sqrt(ledoit_wolf(plain, assume_centered=True)[0])
    deviations = _pooled_deviations(features, labels, first, keep)
    return _inverse_sqrt(ledoit_wolf(deviations, assume_centered=True)[0])


def _pooled_deviations(features: np.ndarray, labels: np.ndarray, whitener: np.ndarray | None,
                       keep: float) -> np.ndarray:
    parts = []
    for label in np.unique(labels):
        rows = features[labels == label]
        if len(rows) < 2:
            continue
        if whitener is None:
            parts.append(rows - rows.mean(axis=0))
            continue
        centre, bulk = robust_centre(rows @ whitener, keep=keep)
        parts.append(rows[bulk] - rows[bulk].mean(axis=0))
    if not parts:
        raise InputError("every class has fewer than 2 samples; the detectors need at least 2 per class")
    return np.concatenate(parts)


def _inverse_sqrt(covariance: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    floor = max(float(values.max()), 1e-12) * 1e-9
    return vectors / np.sqrt(np.maximum(values, floor))
