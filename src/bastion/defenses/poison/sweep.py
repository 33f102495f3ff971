"""Sweep the suspected class: finish the poison cluster the consensus has found.

The consensus flags by one threshold for every class, set so that the false positives it expects
from the *other* classes stay under the budget. A dirty-label backdoor's poison, though, sits in
one class as a cluster of its own, and the cluster's tail can score below natural outliers of
heavier-tailed classes: measured on Fashion-MNIST (BadNets 5%, 3,000 poisoned samples), every
poisoned sample lay on the poison side of its class while the cross-class threshold left 8 of
them out; on scikit-learn digits the consensus found 21 and 15 of 63 in two seeds out of six.
A backdoor keeps working with a few dozen samples left, so the last of the cluster matters.

The sweep, in the one class whose flags stand out most:

1. *Which class.* For each class ``c`` with ``k_c`` flagged of ``n_c``, the binomial tail probability
   of ``k_c`` or more flags when the class is flagged at the other classes' rate
   ``r = (k_rest + 1) / (n_rest + 1)``. The class with the smallest tail probability is swept when
   that probability is below ``significance`` (default 1e-6) and it holds at least ``min_flags``
   flagged and ``min_flags`` unflagged samples (default 10). At most one class is swept: the
   consensus's own assumption is that the poison targets one class.
2. *Where the boundary is.* In whitened features (the detectors' within-class whitening), the
   direction from the unflagged part's mean to the flagged part's mean; every sample of the class
   is projected on it, and each part's projections are modelled as normal (robust centre and
   scale). A sample is assigned to the poison part when that part's likelihood times its share of
   the class exceeds the other's. The parts are re-estimated from the assignment until it stops
   changing (at most ``rounds`` times, default 5).
3. *What is added.* Samples assigned to the poison part are flagged; no flag is removed.

The sweep's additions are not in the consensus's false-positive estimate (they come from one
class, where the cross-class null does not reach); measured on clean digits models it added 0 to
8 samples (at most 0.6% of the set), see ``benchmarks/RESULTS.md``.

Example:
    >>> swept = sweep_suspected_class(features, labels, consensus.flags_)
    >>> swept.flags.sum() >= consensus.flags_.sum()
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bastion.defenses.poison.robust import robust_location_scale, single_threaded, within_class_whitener

_LOG10_FLOOR = -300.0


@dataclass(frozen=True)
class Sweep:
    """What a sweep did.

    Attributes:
        flags: ``(N,)`` the flags after the sweep (a superset of those given).
        swept_class: the class swept, or ``None`` when no class's flags stood out.
        added: how many samples the sweep flagged that were not flagged before.
        log10_tail: ``log10`` of the swept (or most suspicious) class's binomial tail probability.
    """

    flags: np.ndarray
    swept_class: int | None
    added: int
    log10_tail: float


def class_excess(flags: np.ndarray, labels: np.ndarray, *, min_flags: int = 10) -> dict[int, float]:
    """``log10`` binomial tail probability of each class's flag count at the other classes' flag rate.

    Classes with fewer than ``min_flags`` flagged or unflagged samples get 0 (no evidence); the
    smallest value reported is -300 (a probability below 1e-300 is not told apart).
    """
    from scipy.stats import binom

    total, size = int(flags.sum()), len(labels)
    excess: dict[int, float] = {}
    for label in np.unique(labels):
        members = labels == label
        k, n = int(flags[members].sum()), int(members.sum())
        if k < min_flags or n - k < min_flags:
            excess[int(label)] = 0.0
            continue
        rate = (total - k + 1) / (size - n + 1)
        excess[int(label)] = max(float(binom.logsf(k - 1, n, rate) / np.log(10.0)), _LOG10_FLOOR)
    return excess


def sweep_suspected_class(
    features: np.ndarray,
    labels: np.ndarray,
    flags: np.ndarray,
    *,
    significance: float = 1e-6,
    min_flags: int = 10,
    rounds: int = 5,
) -> Sweep:
    """Extend ``flags`` ``(N,)`` over the poison cluster of the most suspicious class; see the module docstring.

    Args:
        features: ``(N, D)`` penultimate features (checked float64, as the detectors take them).
        labels: ``(N,)`` integer labels.
        flags: ``(N,)`` booleans, the consensus's flags.
    """
    flags = np.asarray(flags, dtype=bool)
    excess = class_excess(flags, labels, min_flags=min_flags)
    label = min(excess, key=excess.__getitem__)
    if excess[label] > np.log10(significance):
        return Sweep(flags=flags, swept_class=None, added=0, log10_tail=excess[label])
    rows = np.flatnonzero(labels == label)
    with single_threaded():
        points = features[rows] @ within_class_whitener(features, labels)
    member = _two_part_assignment(points, flags[rows].copy(), min_flags=min_flags, rounds=rounds)
    swept = flags.copy()
    swept[rows] |= member
    return Sweep(flags=swept, swept_class=label, added=int(swept.sum() - flags.sum()), log10_tail=excess[label])


def _two_part_assignment(points: np.ndarray, member: np.ndarray, *, min_flags: int, rounds: int) -> np.ndarray:
    """``(n,)`` membership of the poison part, refined from ``member`` by the likelihood rule of step 2."""
    for _ in range(rounds):
        inside, outside = points[member].mean(axis=0), points[~member].mean(axis=0)
        direction = inside - outside
        length = float(direction @ direction)
        if length <= 0:
            break
        projection = (points - outside) @ direction / length
        share = member.mean()
        log_inside = _normal_log_likelihood(projection, projection[member]) + np.log(share)
        log_outside = _normal_log_likelihood(projection, projection[~member]) + np.log(1.0 - share)
        assigned = log_inside > log_outside
        if assigned.sum() < min_flags or (~assigned).sum() < min_flags or (assigned == member).all():
            return assigned if min_flags <= assigned.sum() <= len(assigned) - min_flags else member
        member = assigned
    return member


def _normal_log_likelihood(values: np.ndarray, part: np.ndarray) -> np.ndarray:
    centre, scale = robust_location_scale(part)
    return -0.5 * ((values - centre) / scale) ** 2 - np.log(scale)
