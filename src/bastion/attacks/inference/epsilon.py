"""An empirical lower bound on a model's differential-privacy epsilon from a membership audit.

Jagielski et al. ("Auditing Differentially Private Machine Learning: How Private is Private SGD?",
NeurIPS 2020) and Nasr et al. ("Adversary Instantiation: Lower Bounds for Differentially Private
Machine Learning", S&P 2021) turn a membership test into a bound: if training is ``(epsilon, delta)``-DP,
then every test of "was this example trained on?" has false-positive and false-negative rates with
(Kairouz et al. 2015)

    FPR + e^epsilon * FNR >= 1 - delta    and    FNR + e^epsilon * FPR >= 1 - delta,

so ``epsilon >= max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR))``. Observed rates are
estimates, so each is replaced by its Clopper-Pearson *upper* confidence bound (the right-hand side
falls as either rate rises, so upper bounds on both give a smaller, conservative epsilon):

    epsilon_lb = max(0, log((1 - delta - FPR_up) / FNR_up), log((1 - delta - FNR_up) / FPR_up)).

``FPR_up`` and ``FNR_up`` are one-sided bounds at level ``alpha / 2`` each (``alpha = 1 - confidence``),
so both hold together with probability ``>= confidence``. When the threshold is searched over the
scores (the default), the level is further divided by the number of thresholds tried (Bonferroni), so
picking the best threshold on the same scores does not inflate the bound; a threshold fixed in advance
(chosen on other data) is tested alone.

Reading the bound: the true epsilon of the training run is at least ``epsilon_lb`` with the stated
confidence, *if* the trials are independent. Jagielski et al. train one model per trial; scoring many
examples of one trained model, as an ordinary membership audit does, pools dependent trials and is a
heuristic (Steinke et al. 2023 give a one-run analysis). The bound is small unless the attack
identifies members with few false positives, which is why it sits far below a DP accountant's epsilon
in practice; a bound above the accountant's epsilon means a broken implementation or accounting.

Shapes: ``scores`` ``(N,)`` finite floats, higher = more likely a member (an example is called a member
when its score is ``>= threshold``); ``is_member`` ``(N,)`` bool with both members and non-members.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import beta

from bastion.attacks.inference.metrics import check_scores
from bastion.core.errors import InputError

#: Default confidence of the bound.
DEFAULT_CONFIDENCE = 0.95


class EpsilonBound(BaseModel):
    """An empirical lower bound on epsilon and the membership test that gave it.

    Attributes:
        epsilon: the lower bound, ``>= 0`` (0 when no threshold proves any leakage).
        threshold: scores ``>= threshold`` were called members.
        fpr, fnr: the test's observed false-positive and false-negative rates.
        fpr_upper, fnr_upper: their Clopper-Pearson upper bounds used in the formula.
        false_positives, false_negatives: the counts behind ``fpr`` and ``fnr``.
        members, non_members: how many of each were scored.
        delta, confidence: as given.
        thresholds_tried: how many thresholds were searched (1 for a fixed threshold); the
            Bonferroni factor on the confidence level.
    """

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(ge=0)
    threshold: float
    fpr: float
    fnr: float
    fpr_upper: float
    fnr_upper: float
    false_positives: int
    false_negatives: int
    members: int
    non_members: int
    delta: float
    confidence: float
    thresholds_tried: int


def clopper_pearson_upper(successes: np.ndarray | int, trials: int, level: float) -> np.ndarray:
    """One-sided upper bounds ``(K,)`` on binomial proportions: ``P(p <= bound) >= 1 - level`` for each.

    ``successes`` ``(K,)`` counts out of ``trials``; the bound is the ``1 - level`` quantile of
    ``Beta(k + 1, n - k)``, and 1 where ``k == n``. For ``k = 0`` it is ``1 - level ** (1 / n)``.
    """
    counts = np.atleast_1d(np.asarray(successes, dtype=np.float64))
    full = counts >= trials
    upper = beta.ppf(1.0 - level, counts + 1.0, np.where(full, 1.0, trials - counts))
    return np.where(full, 1.0, upper)


def epsilon_lower_bound(
    scores: object,
    is_member: object,
    *,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    threshold: float | None = None,
) -> EpsilonBound:
    """The largest epsilon a membership test on ``scores`` ``(N,)`` proves, at ``confidence`` (module docstring).

    Args:
        scores: membership scores, higher = more likely a member (an attack's output).
        is_member: the truth ``(N,)``, bool or 0/1.
        delta: the delta of the guarantee being audited, in ``[0, 1)`` (use the accountant's).
        confidence: in ``(0, 1)``, default 0.95.
        threshold: test only this threshold (chosen on other data); ``None`` (default) searches every
            distinct score with the Bonferroni correction.

    Raises:
        InputError: bad scores or truth (see :func:`~bastion.attacks.inference.metrics.check_scores`),
            ``delta`` or ``confidence`` out of range, or a non-finite ``threshold``.
    """
    score_array, truth = check_scores(scores, is_member)
    delta = _in_range("delta", delta, 0.0, 1.0, low_open=False)
    confidence = _in_range("confidence", confidence, 0.0, 1.0, low_open=True)
    if threshold is None:
        thresholds = np.unique(score_array)
    else:
        thresholds = np.array([_finite("threshold", threshold)])
    member_scores, other_scores = np.sort(score_array[truth]), np.sort(score_array[~truth])
    members, non_members = len(member_scores), len(other_scores)
    false_negatives = np.searchsorted(member_scores, thresholds, side="left")
    false_positives = non_members - np.searchsorted(other_scores, thresholds, side="left")
    level = (1.0 - confidence) / (2 * len(thresholds))
    fpr_upper = clopper_pearson_upper(false_positives, non_members, level)
    fnr_upper = clopper_pearson_upper(false_negatives, members, level)
    candidates = np.maximum(_log_ratio(1.0 - delta - fpr_upper, fnr_upper),
                            _log_ratio(1.0 - delta - fnr_upper, fpr_upper))
    best = int(np.argmax(candidates))
    return EpsilonBound(
        epsilon=max(0.0, float(candidates[best])), threshold=float(thresholds[best]),
        fpr=float(false_positives[best] / non_members), fnr=float(false_negatives[best] / members),
        fpr_upper=float(fpr_upper[best]), fnr_upper=float(fnr_upper[best]),
        false_positives=int(false_positives[best]), false_negatives=int(false_negatives[best]),
        members=members, non_members=non_members, delta=delta, confidence=confidence,
        thresholds_tried=len(thresholds),
    )


def _log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``log(numerator / denominator)``, ``-inf`` where the numerator is not positive (nothing proved)."""
    safe = np.where(numerator > 0, numerator, 1.0)
    return np.where(numerator > 0, np.log(safe) - np.log(denominator), -np.inf)


def _in_range(name: str, value: object, low: float, high: float, *, low_open: bool) -> float:
    inside = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and (
        (low < value if low_open else low <= value) and value < high)
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise InputError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)
