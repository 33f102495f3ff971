"""How well membership scores separate members from non-members: the ROC curve, its area, TPR at low FPR.

Carlini et al. (2022) argue that the average-case AUC hides what matters for privacy: whether an
attack identifies *some* members with near certainty. Hence the headline numbers are the true-positive
rate at 1% and 0.1% false positives, next to the AUC.

The low-FPR rule, exactly: ``tpr_at_fpr(scores, is_member, fpr=a)`` is the largest TPR among the
ROC curve's points (one per distinct score threshold, none dropped) whose FPR is ``<= a``. It is a step
function, not an interpolation: a threshold that achieves it exists. With ``M`` non-members the
smallest non-zero FPR is ``1 / M``, so below it (0.1% needs ``M >= 1000``) the figure is the TPR at zero
false positives.

Shapes: ``scores`` ``(N,)`` finite floats, higher = more likely a member; ``is_member`` ``(N,)`` bool
truth with at least one member and one non-member.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import roc_curve as sklearn_roc_curve

from bastion.core.errors import InputError

#: The thinned curve in a :class:`MembershipResult` keeps at most this many points by default.
MAX_CURVE_POINTS = 500


class MembershipResult(BaseModel):
    """A membership-inference attack's evidence: per-sample scores, the truth, and the ROC summary.

    Attributes:
        attack: the attack's name (``"lira"``, ``"loss-threshold"``).
        params: the attack's configuration (``get_params()``).
        scores: ``N`` membership scores, higher = more likely a member.
        is_member: ``N`` truths, aligned with ``scores``.
        auc: area under the ROC curve (0.5 = guessing).
        tpr_at_1pct, tpr_at_01pct: TPR at FPR <= 1% and <= 0.1% (rule in the module docstring).
        fpr, tpr: the ROC curve, thinned to at most ``MAX_CURVE_POINTS`` points by :func:`thin_curve`.
        members, non_members: how many of each were scored.
    """

    model_config = ConfigDict(extra="forbid")

    attack: str
    params: dict[str, Any] = Field(default_factory=dict)
    scores: list[float]
    is_member: list[bool]
    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    fpr: list[float]
    tpr: list[float]
    members: int
    non_members: int


def roc_points(scores: object, is_member: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC curve: ``(fpr, tpr, thresholds)``, each ``(K,)``, from scikit-learn's ``roc_curve``.

    One point per distinct score (ties share a point) plus the ``(0, 0)`` start; no point is dropped,
    so every threshold the scores allow is on the curve.
    """
    score_array, truth = check_scores(scores, is_member)
    fpr, tpr, thresholds = sklearn_roc_curve(truth, score_array, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(scores: object, is_member: object) -> float:
    """Area under the ROC curve by the trapezoid rule: ``P(member score > non-member score)``, ties count half."""
    fpr, tpr, _ = roc_points(scores, is_member)
    return _area(fpr, tpr)


def tpr_at_fpr(scores: object, is_member: object, fpr: float) -> float:
    """The largest TPR reachable with a false-positive rate ``<= fpr`` (``fpr`` in ``[0, 1]``); see the module doc."""
    target = check_fpr(fpr)
    fprs, tprs, _ = roc_points(scores, is_member)
    return _tpr_at(fprs, tprs, target)


def thin_curve(fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` (>= 4) points of a ROC curve ``(K,)``, ``(K,)``, keeping its low-FPR end whole.

    A curve of ``K <= max_points`` points comes back unchanged. Otherwise the first ``max_points // 2``
    points (the low-FPR end, where the privacy figures are read) are kept as they are, and the rest
    are sampled at evenly spaced positions, always including the last point ``(1, 1)``.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, numbers.Integral) or max_points < 4:
        raise InputError(f"max_points must be an integer >= 4, got {max_points!r}")
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if fpr.shape != tpr.shape or fpr.ndim != 1:
        raise InputError(f"fpr and tpr must be 1-D and of equal length, got {fpr.shape} and {tpr.shape}")
    if len(fpr) <= max_points:
        return fpr, tpr
    head = max_points // 2
    tail = np.linspace(head, len(fpr) - 1, max_points - head).round().astype(np.int64)
    keep = np.unique(np.concatenate([np.arange(head), tail]))
    return fpr[keep], tpr[keep]


def membership_result(
    scores: object,
    is_member: object,
    *,
    attack: str,
    params: dict[str, Any] | None = None,
    max_curve_points: int = MAX_CURVE_POINTS,
) -> MembershipResult:
    """Summarise scores ``(N,)`` against the truth ``(N,)`` as a :class:`MembershipResult`."""
    score_array, truth = check_scores(scores, is_member)
    fpr, tpr, _ = sklearn_roc_curve(truth, score_array, drop_intermediate=False)
    curve_fpr, curve_tpr = thin_curve(fpr, tpr, max_curve_points)
    return MembershipResult(
        attack=attack, params=dict(params or {}), scores=score_array.tolist(), is_member=truth.tolist(),
        auc=_area(fpr, tpr), tpr_at_1pct=_tpr_at(fpr, tpr, 0.01), tpr_at_01pct=_tpr_at(fpr, tpr, 0.001),
        fpr=curve_fpr.tolist(), tpr=curve_tpr.tolist(), members=int(truth.sum()), non_members=int((~truth).sum()),
    )


# --- checks and the two rules -------------------------------------------------------------------------


def check_scores(scores: object, is_member: object) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 ``(N,)`` and ``is_member`` as bool ``(N,)``, checked.

    Raises:
        InputError: not 1-D, lengths that differ, non-finite scores, a truth that is not boolean (or 0/1),
            or only one of members and non-members present.
    """
    score_array, truth = _as_numpy(scores, "scores"), _as_numpy(is_member, "is_member")
    if score_array.ndim != 1 or truth.ndim != 1:
        raise InputError(f"scores and is_member must be 1-D (N,), got shapes {score_array.shape} and {truth.shape}")
    if len(score_array) != len(truth):
        raise InputError(f"scores has {len(score_array)} entries but is_member has {len(truth)}; they must align")
    if score_array.dtype.kind not in "biuf":
        raise InputError(f"scores must be numbers, got dtype {score_array.dtype}")
    score_array = score_array.astype(np.float64)
    if not np.isfinite(score_array).all():
        raise InputError(f"scores must be finite; {int((~np.isfinite(score_array)).sum())} are NaN or infinite")
    if truth.dtype != np.bool_:
        if truth.dtype.kind not in "biu" or not np.isin(truth, (0, 1)).all():
            raise InputError(f"is_member must be booleans (or 0/1), got dtype {truth.dtype}")
        truth = truth.astype(bool)
    if truth.all() or not truth.any():
        raise InputError(f"is_member must hold both members and non-members to draw a ROC curve; got "
                         f"{int(truth.sum())} members and {int((~truth).sum())} non-members")
    return score_array, truth


def check_fpr(fpr: object) -> float:
    """A false-positive rate in ``[0, 1]``."""
    if isinstance(fpr, bool) or not isinstance(fpr, numbers.Real) or not math.isfinite(fpr) or not 0 <= fpr <= 1:
        raise InputError(f"fpr must be a false-positive rate in [0, 1] (0.01 for 1%), got {fpr!r}")
    return float(fpr)


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    # The curve starts at (0, 0), so some point always qualifies; a tiny slack absorbs k/M rounding.
    return float(tpr[fpr <= target + 1e-12].max())


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _as_numpy(values: object, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, np.ndarray | list | tuple):
        return np.asarray(values)
    raise InputError(f"{name} must be a NumPy array, a torch tensor or a list, got {type(values).__name__}")
