"""Poison audit: the spectral-signature, activation-clustering and consensus detectors, by sample id.

Each detector is calibrated by the consensus's false-positive rule (see
:mod:`bastion.defenses.poison.consensus`), so every result here flags under the same ``fp_budget``:
a detector's flags are its samples whose calibrated tail probability is at most the budget, and the
consensus flags by the combination of all of them (plus the label-issue score when given).

Scores (higher = more suspicious): for each detector its per-class standardised score
(``zscores_``); for the consensus ``-log10`` of its calibrated tail probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bastion.data.audit.inputs import ArrayLike, as_array, check_ids, check_labels, check_length
from bastion.data.audit.result import AuditResult
from bastion.defenses.poison.consensus import Combine, FeatureDetector, Impute, PoisonConsensus


def poison_audit(
    ids: Sequence[str],
    features: ArrayLike,
    labels: ArrayLike,
    *,
    label_scores: ArrayLike | Sequence[float] | None = None,
    fp_budget: float = 0.02,
    detectors: Sequence[FeatureDetector] | None = None,
    combine: Combine = "max",
    excluded_classes: int = 1,
    impute: Impute = "worst",
    label_weight: float = 0.5,
    sweep: bool = True,
) -> dict[str, AuditResult]:
    """Run the poison detectors and their consensus on a model's features.

    Args:
        ids: ``N`` sample ids.
        features: ``(N, D)`` penultimate features of the model trained on this data
            (:func:`bastion.defenses.poison.penultimate_features`).
        labels: ``(N,)`` the labels the model was trained with.
        label_scores: optional ``(N,)`` label-issue scores in [0, 1] (the ``scores`` of
            :func:`bastion.data.audit.label_issues`), added to the consensus.
        fp_budget: the false-positive budget, in (0, 1); default 0.02.
        detectors, combine, excluded_classes, impute, label_weight, sweep: as for :class:`PoisonConsensus`.

    Returns:
        ``{name: AuditResult}`` for each detector (``spectral-signatures``, ``activation-clustering``
        by default) and ``poison-consensus``, all over ``ids``.
    """
    ids = check_ids(ids)
    f = as_array(features, "features")
    check_length(f, len(ids), "features")
    y = check_labels(labels, len(ids))
    consensus = PoisonConsensus(detectors, fp_budget=fp_budget, combine=combine,
                                excluded_classes=excluded_classes, impute=impute, label_weight=label_weight,
                                sweep=sweep)
    scores = None if label_scores is None else np.asarray(as_array(label_scores, "label_scores"), dtype=np.float64)
    consensus.fit(f, y, label_scores=scores)
    results: dict[str, AuditResult] = {}
    for detector in consensus.detectors_:
        pvalues = consensus.component_pvalues_[detector.name]
        flags = pvalues <= consensus.fp_budget
        summary = _summary(flags, y, float(pvalues[flags].max()) if flags.any() else 0.0)
        summary["paper_rule_flagged"] = int(np.asarray(detector.flags_).sum())
        clusters = getattr(detector, "clusters_", None)
        if clusters is not None:
            summary["clusters"] = [c.model_dump() for c in clusters]
        results[detector.name] = AuditResult(
            name=detector.name, params={**detector.get_params(), "fp_budget": consensus.fp_budget}, ids=ids,
            scores=np.asarray(detector.zscores_, dtype=np.float64).tolist(), flags=flags.tolist(), summary=summary)
    summary = _summary(consensus.flags_, y, consensus.estimated_fpr_)  # the sweep's additions are not in the estimate
    summary["components"] = list(consensus.components_)
    if consensus.sweep_ is not None:
        summary["sweep"] = {"class": consensus.sweep_.swept_class, "added": consensus.sweep_.added,
                            "log10_tail": consensus.sweep_.log10_tail}
    results[consensus.name] = AuditResult(name=consensus.name, params=consensus.get_params(), ids=ids,
                                          scores=consensus.scores_.tolist(), flags=consensus.flags_.tolist(),
                                          summary=summary)
    return results


def _summary(flags: np.ndarray, labels: np.ndarray, estimated_fpr: float) -> dict[str, Any]:
    """Flag counts overall and per label, and the rule's estimated false-positive rate at the threshold."""
    return {
        "flagged": int(flags.sum()),
        "per_label": {str(int(c)): int(flags[labels == c].sum()) for c in np.unique(labels)},
        "estimated_fpr": estimated_fpr,
    }
