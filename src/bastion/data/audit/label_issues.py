"""Label-issue audit: confident learning (cleanlab) on out-of-sample predicted probabilities.

Confident learning (Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021) estimates, from predicted probabilities and given labels, how many samples of
each class carry each wrong label, and flags that many of the least likely ones. bastion calls
cleanlab for it (``cleanlab.filter.find_label_issues`` and ``cleanlab.rank.get_label_quality_scores``)
rather than re-implementing it.

The probabilities must be *out of sample*: a model that has seen a sample with a wrong label has
learned that label. By default they come from a cross-validated logistic regression
(``cross_val_predict``, stratified ``cv_folds`` folds) on the features given (a model's penultimate
features are best) or, without features, on the raw inputs (images averaged down to at most 16x16).
Your own out-of-sample ``pred_probs`` can be passed instead.

Score (higher = more suspicious): ``1 - label quality``, the quality being cleanlab's
self-confidence, the predicted probability of the given label. Flags: cleanlab's issues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.data.audit.inputs import ArrayLike, as_array, check_ids, check_labels, sample_vectors
from bastion.data.audit.result import AuditResult


def label_issues(
    ids: Sequence[str],
    labels: ArrayLike,
    *,
    features: ArrayLike | None = None,
    x: ArrayLike | None = None,
    pred_probs: ArrayLike | None = None,
    cv_folds: int = 5,
    filter_by: str = "prune_by_noise_rate",
    max_side: int = 16,
    seed: int = 0,
) -> AuditResult:
    """Find samples whose label the data itself contradicts.

    Args:
        ids: ``N`` sample ids. labels: ``(N,)`` integer class labels as given.
        features: ``(N, D)`` vectors for the cross-validated classifier (preferred).
        x: ``(N, ...)`` samples, used when neither ``features`` nor ``pred_probs`` is given.
        pred_probs: ``(N, C)`` out-of-sample predicted probabilities (column ``c`` = class ``c``);
            when given, no classifier is trained.
        cv_folds: folds of the cross-validation, default 5; every class needs at least that many samples.
        filter_by: cleanlab's issue filter, default ``"prune_by_noise_rate"``.
        max_side: raw images are averaged down to at most this side, default 16.
        seed: seeds the fold split, default 0.

    Returns:
        An :class:`AuditResult` named ``label-issues``; ``summary`` holds the issue count per given
        label and, per flagged id, the label the probabilities suggest.
    """
    ids = check_ids(ids)
    y = check_labels(labels, len(ids))
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
        raise InputError(f"cv_folds must be an integer >= 2, got {cv_folds!r}")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise InputError("label issues need at least 2 classes in the labels")
    if pred_probs is not None:
        probs, source = _given_probabilities(pred_probs, y), "given pred_probs"
        probs = probs[:, classes]
        probs = probs / probs.sum(axis=1, keepdims=True)
    else:
        vectors = sample_vectors(x, features, len(ids), max_side=max_side)
        probs = _cross_validated(vectors, codes, cv_folds, seed)
        source = (f"{cv_folds}-fold cross-validated logistic regression on "
                  f"{'features' if features is not None else 'raw inputs'}")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues = find_label_issues(codes, probs, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(codes, probs, method="self_confidence")
    suggested = classes[probs.argmax(axis=1)]
    flagged = np.flatnonzero(issues)
    summary: dict[str, Any] = {
        "flagged": int(issues.sum()),
        "per_label": {str(int(c)): int(issues[y == c].sum()) for c in classes},
        "suggested_labels": {ids[i]: int(suggested[i]) for i in flagged},
        "pred_probs": source,
    }
    params = {"cv_folds": cv_folds, "filter_by": filter_by, "max_side": max_side, "seed": seed,
              "quality": "self_confidence"}
    return AuditResult(name="label-issues", params=params, ids=ids, scores=(1.0 - quality).tolist(),
                       flags=issues.astype(bool).tolist(), summary=summary)


def _given_probabilities(pred_probs: ArrayLike, y: np.ndarray) -> np.ndarray:
    probs = as_array(pred_probs, "pred_probs").astype(np.float64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise InputError(f"pred_probs must have shape (N, C) with N = {len(y)}, got {probs.shape}")
    if probs.shape[1] <= int(y.max()):
        raise InputError(f"pred_probs has {probs.shape[1]} columns but labels go up to {int(y.max())}")
    if not np.isfinite(probs).all() or probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise InputError("pred_probs must be probabilities: non-negative rows that sum to 1")
    return probs


def _cross_validated(vectors: np.ndarray, codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bastion.defenses.poison.robust import single_threaded

    smallest = int(np.bincount(codes).min())
    if smallest < folds:
        raise InputError(f"a class has only {smallest} samples, fewer than cv_folds={folds}; lower cv_folds "
                         "or pass out-of-sample pred_probs")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with single_threaded():
        return cross_val_predict(model, vectors, codes, cv=splitter, method="predict_proba")
