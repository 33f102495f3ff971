"""Spectral signatures: poisoned samples leave a trace along the top singular direction of their class.

Paper: Tran, Li, Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018. Per class, centre
the penultimate features, take the top right singular vector ``v`` of the centred matrix and score
each sample by its squared projection on ``v``; a backdoor's samples, all shifted the same way,
dominate that direction and score highest.

Two refinements, both on by default and both switchable off (``whiten=False, robust=False`` is the
paper's method exactly), in the spirit of SPECTRE (Hayase et al., ICML 2021):

- ``whiten``: features are first multiplied by the inverse square root of the within-class
  covariance, pooled over classes from each class's bulk and shrunk (Ledoit-Wolf). Without it the
  top direction is often a large natural variation of the class (stroke width, a sub-style), not
  the backdoor.
- ``robust``: the class is centred at a robust centre (the mean of the half of the class nearest a
  median start, re-estimated three times) instead of its mean, which a poisoned third of the class
  drags halfway towards itself.

Per-sample outputs (arrays ``(N,)`` in the order of the input):
    ``scores_``: the squared projection (Tran's score; higher = more suspicious).
    ``projections_``: the signed projection on the class's top direction.
    ``zscores_``: ``|projection - median| / (1.4826 MAD)``, centre and scale from the class's bulk
    (the per-class standardised score :class:`~bastion.defenses.poison.consensus.PoisonConsensus`
    reads; penultimate features are heavy-tailed, so it is not turned into a probability by a normal
    model: the consensus calibrates it on the data).
    ``flags_``: per class, the top ``flag_fraction`` of scores, or every ``zscore > z_threshold`` when
    that is set.

Example:
    >>> detector = SpectralSignatures(expected_rate=0.1).fit(features, labels)
    >>> suspected = np.flatnonzero(detector.flags_)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.poison.robust import (
    check_features,
    robust_centre,
    robust_zscores,
    single_threaded,
    within_class_whitener,
)


def _fraction(value: float, name: str, *, upper: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 < value <= upper:
        raise InputError(f"{name} must be a number in (0, {upper:g}], got {value!r}")
    return float(value)


class SpectralSignatures:
    """Score samples by their projection on their class's top singular direction of penultimate features.

    Args:
        expected_rate: the expected fraction of poison in an attacked class (Tran's epsilon), default 0.05.
        flag_fraction: the fraction of each class to flag; default ``1.5 * expected_rate`` (as in the paper).
        z_threshold: when set, flag by robust z-score (``zscores_ > z_threshold``) instead of a fraction.
        whiten: whiten with the pooled within-class covariance first, default True.
        robust: centre each class robustly instead of at its mean, default True.
    """

    name = "spectral-signatures"

    def __init__(
        self,
        expected_rate: float = 0.05,
        *,
        flag_fraction: float | None = None,
        z_threshold: float | None = None,
        whiten: bool = True,
        robust: bool = True,
    ) -> None:
        self.expected_rate = _fraction(expected_rate, "expected_rate")
        self.flag_fraction = None if flag_fraction is None else _fraction(flag_fraction, "flag_fraction")
        if z_threshold is not None and not (math.isfinite(z_threshold) and z_threshold > 0):
            raise InputError(f"z_threshold must be a positive number, got {z_threshold!r}")
        self.z_threshold = z_threshold
        self.whiten = bool(whiten)
        self.robust = bool(robust)

    def get_params(self) -> dict[str, Any]:
        return {"expected_rate": self.expected_rate, "flag_fraction": self.flag_fraction,
                "z_threshold": self.z_threshold, "whiten": self.whiten, "robust": self.robust}

    def fit(self, features: np.ndarray, labels: np.ndarray) -> SpectralSignatures:
        """Score every sample of ``features`` ``(N, D)`` within its class ``labels`` ``(N,)``; returns self."""
        f, y = check_features(features, labels)
        with single_threaded():
            whitener = within_class_whitener(f, y) if self.whiten else np.eye(f.shape[1])
            self.projections_ = np.zeros(len(y))
            for label in np.unique(y):
                rows = np.flatnonzero(y == label)
                self.projections_[rows] = self._class_projection(f[rows] @ whitener)
        self.scores_ = self.projections_**2
        z = robust_zscores(self.projections_, y)
        self.zscores_ = np.abs(z)
        self.flags_ = self._flags(y)
        return self

    def _class_projection(self, points: np.ndarray) -> np.ndarray:
        if len(points) < 2:
            return np.zeros(len(points))
        centre = robust_centre(points)[0] if self.robust else points.mean(axis=0)
        centred = points - centre
        # The top right singular vector of the centred matrix is the top eigenvector of its Gram
        # matrix (D x D), which is much cheaper to get than a full SVD when the class is large.
        top = np.linalg.eigh(centred.T @ centred)[1][:, -1]
        return centred @ top

    def _flags(self, y: np.ndarray) -> np.ndarray:
        if self.z_threshold is not None:
            return self.zscores_ > self.z_threshold
        fraction = self.flag_fraction if self.flag_fraction is not None else min(1.0, 1.5 * self.expected_rate)
        flags = np.zeros(len(y), dtype=bool)
        for label in np.unique(y):
            rows = np.flatnonzero(y == label)
            count = int(round(fraction * len(rows)))
            if count:
                flags[rows[np.argsort(-self.scores_[rows], kind="stable")[:count]]] = True
        return flags
