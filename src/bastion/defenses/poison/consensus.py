"""A consensus poison detector with an explicit false-positive budget.

Several detectors each give every sample a per-class standardised score (higher = more suspicious):
spectral signatures and activation clustering by default, plus, when given, the label-issue score.
The consensus combines them and flags samples so that the *estimated* false-positive rate on clean
data is at most ``fp_budget`` (default 0.02).

The rule, precisely
-------------------
Notation: classes ``c`` with ``n_c`` samples (``N`` in all); for a score ``T`` and a threshold ``t``,
``e_c(t)`` is the fraction of class ``c`` with ``T >= t``.

1. *Null from the classes themselves.* A dirty-label backdoor puts its poison in one class (its
   target). The ``excluded_classes`` classes (default 1) with the highest ``e_c(t)`` at a threshold
   are taken to be the poisoned ones; every other class is taken to be clean, so its ``e_c(t)`` is a
   false-positive rate observed on the data. The estimated false-positive rate at ``t`` is::

       FPR(t) = [ sum_{c kept} n_c e_c(t)  +  (sum_{c excluded} n_c) * max_{c kept} e_c(t) ] / N

   that is, each excluded class's clean part is assumed to fare as badly as the *worst* kept class
   (``impute="worst"``, the default: conservative, the measured rate comes out near half the
   budget), or as the kept classes' average (``impute="mean"``: an unbiased estimate when the
   excluded classes behave like the others, so the measured rate lands near the budget, on either
   side). ``FPR`` is made non-increasing in ``t`` by taking, at each ``t``, the largest value over
   all higher thresholds.
2. *Per detector.* Each detector's score ``T_k`` becomes a tail probability ``p_k = FPR_k(T_k)``
   by the rule of step 1 (no distributional assumption: penultimate features are heavy-tailed, and
   normal tail probabilities of robust z-scores under-count false positives several-fold).
3. *Combination.* With a weight ``w_k`` per component, ``combine="max"`` (default):
   ``S = max_k w_k * (-log10 p_k)``, the strongest single piece of evidence; ``combine="fisher"``:
   ``S = sum_k w_k * (-2 ln p_k)``. Both were measured on BadNets-poisoned digits and Fashion-MNIST
   and were within a point of each other on the two detectors; ``max`` is the default because it
   does not assume the components independent (the detectors read the same features) and a sample
   one detector is sure of is not diluted by the others. The detectors weigh 1; the label-issue
   score weighs ``label_weight`` (default 0.5), so it flags on its own only when its tail
   probability is about the square of the detectors' threshold. The reason: against dirty-label
   backdoors it carries no signal (a cross-validated model learns the trigger too, so poisoned
   labels look right), and at weight 1 it spent budget that the detectors needed (digits, BadNets
   5%: recall 0.92 -> 0.84 at weight 1, unchanged at 0.5). Mislabelled samples are the label-issue
   audit's to report.
4. *Calibration of the combination.* ``S`` is calibrated by the rule of step 1 once more, giving each
   sample its final tail probability ``pvalues_ = FPR(S)``; a sample is flagged when
   ``pvalues_ <= fp_budget``. Calibrating the combined score itself keeps the budget whatever the
   dependence between detectors.
5. *Sweep* (``sweep=True``, the default; :mod:`bastion.defenses.poison.sweep`). In the one class
   whose flags stand out most (binomial tail below 1e-6), the boundary between its flagged cluster
   and the rest of the class is redrawn in feature space, and the samples on the cluster's side are
   flagged too: the cross-class threshold of step 4 leaves the cluster's tail behind when other
   classes have heavier-tailed natural outliers. Its additions (``sweep_.added``) are outside the
   estimate of step 4. Only :meth:`PoisonConsensus.fit` sweeps (it needs the features).

Assumptions behind the guarantee: the poison sits in at most ``excluded_classes`` classes, and the
clean parts of those classes are no worse-tailed than the worst (``"worst"``) or the average
(``"mean"``) of the others. Label flips spread over every class break the first assumption: find
them with the label-issue audit instead.

Outputs (arrays ``(N,)``): ``scores_`` = ``-log10(pvalues_)`` (higher = more suspicious),
``pvalues_``, ``flags_`` (after the sweep), and per component ``component_pvalues_[name]``;
``threshold_`` is the smallest combined score ``S`` that step 4 flags (``inf`` when none), ``estimated_fpr_``
the rule's false-positive estimate at that threshold; ``sweep_`` the :class:`Sweep` (``None`` when off).

Example:
    >>> consensus = PoisonConsensus(fp_budget=0.02).fit(features, labels)
    >>> suspected = np.flatnonzero(consensus.flags_)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.poison.activation_clustering import ActivationClustering
from bastion.defenses.poison.robust import check_features, robust_zscores
from bastion.defenses.poison.spectral import SpectralSignatures
from bastion.defenses.poison.sweep import Sweep, sweep_suspected_class

Combine = Literal["max", "fisher"]
Impute = Literal["worst", "mean"]
#: The name of the label-issue component.
LABEL_COMPONENT = "label-issues"
#: Smallest tail probability used in logarithms (one sample in a billion).
_FLOOR = 1e-9


class FeatureDetector(Protocol):
    """A detector the consensus can run: ``fit(features, labels)`` sets ``zscores_`` (higher = more suspicious)."""

    name: str

    def fit(self, features: np.ndarray, labels: np.ndarray) -> Any: ...

    def get_params(self) -> dict[str, Any]: ...


def check_budget(fp_budget: object) -> float:
    """``fp_budget`` as a float in the open interval ``(0, 1)``."""
    if isinstance(fp_budget, bool) or not isinstance(fp_budget, int | float) or not math.isfinite(fp_budget) \
            or not 0.0 < fp_budget < 1.0:
        raise InputError(f"fp_budget must be a false-positive rate in (0, 1), e.g. 0.02; got {fp_budget!r}")
    return float(fp_budget)


def class_pooled_fpr(
    statistic: np.ndarray, labels: np.ndarray, *, excluded_classes: int = 1, impute: Impute = "worst"
) -> np.ndarray:
    """``(N,)`` estimated false-positive rate of flagging every sample scoring at least each sample's score.

    The rule of step 1 in the module docstring, evaluated at ``t = statistic[i]`` for every ``i``.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    if len(classes) <= excluded_classes:
        raise InputError(
            f"the consensus needs more classes ({len(classes)}) than excluded_classes ({excluded_classes}): "
            "it estimates false positives from the classes taken to be clean"
        )
    thresholds = np.unique(statistic)[::-1]  # descending
    exceed = np.empty((len(classes), len(thresholds)))
    for row, label in enumerate(classes):
        ordered = np.sort(statistic[labels == label])
        exceed[row] = 1.0 - np.searchsorted(ordered, thresholds, side="left") / len(ordered)
    by_rate = np.argsort(-exceed, axis=0, kind="stable")
    top, kept = by_rate[:excluded_classes], by_rate[excluded_classes:]
    kept_rates = np.take_along_axis(exceed, kept, axis=0)
    kept_sizes = sizes[kept]
    observed = (kept_rates * kept_sizes).sum(axis=0)
    if impute == "worst":
        estimate = (observed + sizes[top].sum(axis=0) * kept_rates.max(axis=0)) / sizes.sum()
    else:
        estimate = observed / kept_sizes.sum(axis=0)
    estimate = np.maximum.accumulate(estimate)  # non-increasing in the threshold
    position = np.searchsorted(-thresholds, -statistic, side="left")
    return estimate[position]


class PoisonConsensus:
    """Combine poison detectors (and the label-issue score) under a false-positive budget.

    Args:
        detectors: detectors run on the features by :meth:`fit`; default
            ``[SpectralSignatures(), ActivationClustering()]``.
        fp_budget: the largest estimated false-positive rate allowed, in (0, 1); default 0.02.
        combine: ``"max"`` (default) or ``"fisher"``; see the module docstring.
        excluded_classes: classes assumed to hold poison when estimating false positives, default 1.
        impute: ``"worst"`` (default) or ``"mean"``; see the module docstring.
        label_weight: the weight of the label-issue score in the combination, in (0, 1]; default 0.5.
        sweep: finish the poison cluster of the most suspicious class (step 5), default True.
    """

    name = "poison-consensus"

    def __init__(
        self,
        detectors: Sequence[FeatureDetector] | None = None,
        *,
        fp_budget: float = 0.02,
        combine: Combine = "max",
        excluded_classes: int = 1,
        impute: Impute = "worst",
        label_weight: float = 0.5,
        sweep: bool = True,
    ) -> None:
        self.detectors = list(detectors) if detectors is not None else [SpectralSignatures(), ActivationClustering()]
        self.fp_budget = check_budget(fp_budget)
        if combine not in ("max", "fisher"):
            raise InputError(f"combine must be 'max' or 'fisher', got {combine!r}")
        if isinstance(excluded_classes, bool) or not isinstance(excluded_classes, int) or excluded_classes < 0:
            raise InputError(f"excluded_classes must be an integer >= 0, got {excluded_classes!r}")
        if impute not in ("worst", "mean"):
            raise InputError(f"impute must be 'worst' or 'mean', got {impute!r}")
        if isinstance(label_weight, bool) or not isinstance(label_weight, int | float) \
                or not 0.0 < label_weight <= 1.0:
            raise InputError(f"label_weight must be in (0, 1], got {label_weight!r}")
        self.label_weight = float(label_weight)
        self.combine = combine
        self.excluded_classes = excluded_classes
        self.impute = impute
        self.sweep = bool(sweep)

    def get_params(self) -> dict[str, Any]:
        return {"detectors": {d.name: d.get_params() for d in self.detectors}, "fp_budget": self.fp_budget,
                "combine": self.combine, "excluded_classes": self.excluded_classes, "impute": self.impute,
                "label_weight": self.label_weight, "sweep": self.sweep}

    def fit(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        label_scores: np.ndarray | None = None,
        extra_scores: Mapping[str, np.ndarray] | None = None,
    ) -> PoisonConsensus:
        """Run the detectors on ``features`` ``(N, D)`` with ``labels`` ``(N,)`` and flag under the budget.

        Args:
            label_scores: optional ``(N,)`` label-issue suspicion in [0, 1] (``1 -`` cleanlab's label
                quality, as :func:`bastion.data.audit.label_issues` reports it); it enters as one more
                component, standardised per class on the logit scale.
            extra_scores: optional further ``(N,)`` per-sample scores by name (higher = more suspicious),
                standardised per class by robust z-score.

        Returns:
            self, with ``components_`` (name -> standardised score) and the outputs in the module docstring.
        """
        f, y = check_features(features, labels)
        components: dict[str, np.ndarray] = {}
        self.detectors_ = [detector.fit(f, y) for detector in self.detectors]
        for detector in self.detectors_:
            components[detector.name] = np.asarray(detector.zscores_, dtype=np.float64)
        if label_scores is not None:
            suspicion = _score_array(label_scores, len(y), "label_scores")
            if suspicion.min() < 0 or suspicion.max() > 1:
                raise InputError("label_scores must lie in [0, 1] (1 - label quality)")
            clipped = np.clip(suspicion, 1e-6, 1 - 1e-6)
            components[LABEL_COMPONENT] = robust_zscores(np.log(clipped / (1 - clipped)), y)
        for name, values in (extra_scores or {}).items():
            components[name] = robust_zscores(_score_array(values, len(y), name), y)
        if not components:
            raise InputError("the consensus needs at least one detector or score")
        self.fit_scores(components, y)
        if self.sweep:
            self.sweep_ = sweep_suspected_class(f, y, self.flags_)
            self.flags_ = self.sweep_.flags
        return self

    def fit_scores(self, components: Mapping[str, np.ndarray], labels: np.ndarray) -> PoisonConsensus:
        """Combine already standardised per-sample scores (name -> ``(N,)``, higher = more suspicious).

        A component named ``"label-issues"`` gets ``label_weight``; every other one weighs 1.
        """
        y = np.asarray(labels)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"labels must be integer class indices of shape (N,), got {y.dtype} {y.shape}")
        self.components_ = {name: _score_array(v, len(y), name) for name, v in components.items()}
        if not self.components_:
            raise InputError("the consensus needs at least one score")
        rule = {"excluded_classes": self.excluded_classes, "impute": self.impute}
        self.component_pvalues_ = {name: class_pooled_fpr(v, y, **rule) for name, v in self.components_.items()}
        weights = np.array([self.label_weight if name == LABEL_COMPONENT else 1.0 for name in self.components_])
        evidence = -np.log10(np.maximum(np.stack(list(self.component_pvalues_.values())), _FLOOR)) * weights[:, None]
        combined = evidence.max(axis=0) if self.combine == "max" else 2.0 * np.log(10.0) * evidence.sum(axis=0)
        self.pvalues_ = class_pooled_fpr(combined, y, **rule)
        self.scores_ = -np.log10(np.maximum(self.pvalues_, _FLOOR))
        self.flags_ = self.pvalues_ <= self.fp_budget
        self.combined_ = combined
        self.threshold_ = float(combined[self.flags_].min()) if self.flags_.any() else math.inf
        self.estimated_fpr_ = float(self.pvalues_[self.flags_].max()) if self.flags_.any() else 0.0
        self.sweep_: Sweep | None = None
        return self


def _score_array(values: object, n: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64) if not hasattr(values, "detach") else \
        values.detach().cpu().numpy().astype(np.float64)  # type: ignore[union-attr]
    if array.shape != (n,):
        raise InputError(f"{name} must have shape ({n},) (one score per sample), got {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return array
