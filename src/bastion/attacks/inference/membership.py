"""Membership inference: was ``(x, y)`` in the model's training set? The loss-threshold attack and LiRA.

Both read only the target's scores (``Classifier.logits``; ``"scores"`` access is enough), so a
remote endpoint can be the target. Scores are ``(N,)`` float64 NumPy arrays, higher = more likely a
member; :func:`evaluate_membership` turns them into a :class:`MembershipResult` (AUC, TPR at 1% and
0.1% FPR, the ROC curve).

- :class:`LossThreshold` (Yeom et al., CSF 2018): a model's loss is lower on its training points.
  Score = ``-loss = log p_y``; optionally standardised per class on reference data, so that one
  threshold fits easy and hard classes alike.
- :class:`LiRA` (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022): per
  example, the distribution of the logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` over shadow
  models trained with (IN) and without (OUT) the example is fitted by a Gaussian, and the target's
  ``phi`` is scored by a likelihood-ratio test. It catches members that a global loss threshold
  misses (an unusual example fitted by the target) and does not flag easy non-members.

Not implemented: LiRA's augmented queries (averaging ``phi`` over flipped and shifted copies of each
example), which the paper finds helps a little; every example is queried once, as given.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy.special import log_ndtr

from bastion.attacks.inference.base import (
    ArrayLike,
    MembershipAttack,
    labelled_batch,
    logit_confidence,
    query_logits,
    require_access,
    true_label_log_prob,
)
from bastion.attacks.inference.metrics import MAX_CURVE_POINTS, MembershipResult, membership_result
from bastion.attacks.inference.shadows import ShadowTrainer, shadow_membership
from bastion.core.errors import InputError
from bastion.core.ids import sample_ids
from bastion.core.seeding import derive_seed
from bastion.models.base import Classifier

if TYPE_CHECKING:
    from bastion.scan.engine import ScanEngine

#: ``variance="auto"`` fits a per-example variance from this many shadows on (the paper: 64 or more).
PER_EXAMPLE_VARIANCE_FROM = 64
#: Standard deviations are floored here (``phi`` units) so that a degenerate fit gives finite scores.
MIN_STD = 1e-3

Variance = Literal["auto", "global", "per-example"]


class LossThreshold:
    """Yeom et al.'s loss attack: score = ``log p_y`` (minus the cross-entropy of the true label).

    Args:
        per_class: standardise scores per class, ``(log p_y - mean_c) / std_c`` with the class's mean
            and standard deviation on reference data given to :meth:`fit`; default ``False``.
        batch_size: inputs per query, default 512.

    Thresholding the score at the target's mean training loss gives Yeom's decision rule; the ROC
    metrics sweep every threshold instead, so none is fixed here.

    Example:
        >>> result = evaluate_membership(LossThreshold(), target, x_in, y_in, x_out, y_out)
    """

    name = "loss-threshold"

    def __init__(self, *, per_class: bool = False, batch_size: int = 512) -> None:
        self.per_class = bool(per_class)
        self.batch_size = _positive_int(batch_size, "batch_size")

    def get_params(self) -> dict[str, Any]:
        return {"per_class": self.per_class, "batch_size": self.batch_size}

    def fit(self, target: Classifier, x_reference: ArrayLike, y_reference: ArrayLike) -> LossThreshold:
        """Learn the per-class calibration from the target's scores on reference data ``(M, *input_shape)``, ``(M,)``.

        Reference points need not be labelled as members or not (a sample of the population will do);
        only with ``per_class=True`` is fitting needed. Sets ``class_mean_`` and ``class_std_`` ``(C,)``.
        """
        require_access(target, "scores", self.name)
        x, y = labelled_batch(target, x_reference, y_reference, "x_reference")
        log_prob = true_label_log_prob(query_logits(target, x, self.batch_size), y).numpy()
        counts = np.bincount(y.numpy(), minlength=target.num_classes)
        missing = np.flatnonzero(counts < 2)
        if self.per_class and len(missing):
            raise InputError(f"per-class calibration needs at least 2 reference points of every class; classes "
                             f"{missing.tolist()} have fewer")
        labels = y.numpy()
        self.class_mean_ = np.array([log_prob[labels == c].mean() if counts[c] else 0.0
                                     for c in range(target.num_classes)])
        self.class_std_ = np.array([max(log_prob[labels == c].std(), MIN_STD) if counts[c] > 1 else 1.0
                                    for c in range(target.num_classes)])
        return self

    def score(self, target: Classifier, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Membership scores ``(N,)`` for ``x`` ``(N, *input_shape)`` with labels ``y`` ``(N,)``."""
        require_access(target, "scores", self.name)
        inputs, labels = labelled_batch(target, x, y)
        log_prob = true_label_log_prob(query_logits(target, inputs, self.batch_size), labels).numpy()
        if not self.per_class:
            return log_prob
        if not hasattr(self, "class_mean_"):
            raise InputError("LossThreshold(per_class=True) must be fitted first: call fit(target, x_reference, "
                             "y_reference)")
        if len(self.class_mean_) != target.num_classes:
            raise InputError(f"fitted on a model with {len(self.class_mean_)} classes; this one has "
                             f"{target.num_classes}")
        index = labels.numpy()
        return (log_prob - self.class_mean_[index]) / self.class_std_[index]


class LiRA:
    """The likelihood-ratio attack: per-example Gaussians of ``phi`` over shadow models, and a test.

    Args:
        shadows: how many shadow models to train, >= 2 (default 16); each population example is IN
            for ``shadows // 2`` of them.
        online: ``True`` (default) fits IN and OUT Gaussians and scores the log-likelihood ratio
            ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``: the target examples must be in
            the population. ``False`` (offline) fits only OUT and scores the one-sided test
            ``-log P(Z > phi)``, ``Z ~ N(mu_out, s_out)``: how surprisingly confident the target is.
        variance: ``"global"`` (one IN and one OUT standard deviation, pooled within examples over
            the population), ``"per-example"`` (needs >= 4 shadows) or ``"auto"`` (default):
            per-example from ``PER_EXAMPLE_VARIANCE_FROM`` shadows on, global below, as the paper advises.
        seed: picks the IN/OUT split and the shadows' seeds (``derive_seed(seed, "lira-shadow", i)``).
        batch_size: inputs per query, default 512.

    Fitted state: ``shadows_`` (the trained classifiers), ``in_mask_`` bool ``(S, P)``, ``std_in_``,
    ``std_out_`` (global, ``phi`` units), ``population_size_``. A target example is matched to the
    population by content (its sample id: the bytes of ``x`` and its label); an example outside the
    population is OUT for every shadow.

    Example:
        >>> lira = LiRA(shadows=16).fit(x_population, y_population, shadow_trainer(digits_cnn, epochs=20))
        >>> scores = lira.score(target, x, y)
    """

    name = "lira"

    def __init__(self, shadows: int = 16, *, online: bool = True, variance: Variance = "auto", seed: int = 0,
                 batch_size: int = 512) -> None:
        self.shadows = _positive_int(shadows, "shadows")
        if self.shadows < 2:
            raise InputError(f"LiRA needs at least 2 shadow models, got shadows={shadows}")
        if variance not in ("auto", "global", "per-example"):
            raise InputError(f"variance must be 'auto', 'global' or 'per-example', got {variance!r}")
        if variance == "per-example" and self.shadows < 4:
            raise InputError(f"a per-example variance needs at least 4 shadows (2 IN, 2 OUT per example), got "
                             f"{self.shadows}; use variance='global'")
        self.online = bool(online)
        self.variance: Variance = variance
        self.seed = int(seed)
        self.batch_size = _positive_int(batch_size, "batch_size")

    def get_params(self) -> dict[str, Any]:
        return {"shadows": self.shadows, "online": self.online, "variance": self.variance,
                "per_example_variance": self._per_example, "seed": self.seed, "batch_size": self.batch_size}

    @property
    def _per_example(self) -> bool:
        return self.variance == "per-example" or (self.variance == "auto" and self.shadows >= PER_EXAMPLE_VARIANCE_FROM)

    def fit(self, population_x: ArrayLike, population_y: ArrayLike, train_shadow: ShadowTrainer, *,
            engine: ScanEngine | None = None) -> LiRA:
        """Train the shadows on random halves of the population ``(P, *shape)``, ``(P,)`` and fit global variances.

        ``train_shadow(x, y, seed) -> Classifier`` gets NumPy ``float32`` inputs and ``int64`` labels.
        Deterministic given ``seed`` when ``train_shadow`` is. ``engine`` trains the shadows (default: one
        after another in this process; a :class:`~bastion.scan.engine.RayEngine` trains them on a cluster, each
        shadow a task, the population sent once).
        """
        x_pop, y_pop = _population(population_x, population_y)
        self.in_mask_ = shadow_membership(len(y_pop), self.shadows, self.seed)
        jobs = [(chosen, derive_seed(self.seed, "lira-shadow", index)) for index, chosen in enumerate(self.in_mask_)]
        if engine is None:
            models = [_train_shadow(train_shadow, x_pop, y_pop, *job) for job in jobs]
        else:
            models = engine.map(_train_shadow, jobs, shared=(train_shadow, x_pop, y_pop))
        for index, model in enumerate(models):
            _check_shadow(model, index, x_pop, y_pop)
        self.shadows_ = models
        self.population_size_ = len(y_pop)
        self._population_masks = _masks_by_id(sample_ids(x_pop, y_pop), self.in_mask_)
        phi = self._shadow_confidence(torch.from_numpy(x_pop), torch.from_numpy(y_pop))
        self.std_in_ = _pooled_std(phi, self.in_mask_)
        self.std_out_ = _pooled_std(phi, ~self.in_mask_)
        return self

    def score(self, target: Classifier, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Membership scores ``(N,)`` for ``x`` ``(N, *input_shape)`` with labels ``y`` ``(N,)``; higher = member.

        Raises:
            InputError: not fitted, inputs that do not fit the target, or (online) examples that are not
                in the population, for which no shadow was trained IN.
            CapabilityError: a target with labels-only access.
        """
        if not hasattr(self, "shadows_"):
            raise InputError("LiRA must be fitted first: call fit(population_x, population_y, train_shadow)")
        require_access(target, "scores", self.name)
        if target.num_classes != self.shadows_[0].num_classes:
            raise InputError(f"the target has {target.num_classes} classes but the shadows have "
                             f"{self.shadows_[0].num_classes}; train shadows like the target")
        inputs, labels = labelled_batch(target, x, y)
        in_mask = self._in_mask(inputs, labels)
        if self.online and not in_mask.any(axis=0).all():
            outside = np.flatnonzero(~in_mask.any(axis=0))
            raise InputError(f"online LiRA needs shadows trained with each example, but {len(outside)} examples "
                             f"(first: index {int(outside[0])}) are not in the population it was fitted on; add "
                             "them to the population or use LiRA(online=False)")
        if not (~in_mask).any(axis=0).all():
            inside = int(np.flatnonzero(~(~in_mask).any(axis=0))[0])
            raise InputError(f"example {inside} is IN for every shadow (the population holds copies of it), so "
                             "no OUT distribution can be fitted; remove the duplicates from the population")
        phi_target = logit_confidence(query_logits(target, inputs, self.batch_size), labels).numpy()
        phi_shadow = self._shadow_confidence(inputs, labels)
        mean_out, std_out = _gaussian(phi_shadow, ~in_mask, self.std_out_, self._per_example)
        if not self.online:
            # -log P(Z > phi): the one-sided p-value in log space, finite far into the tail.
            return -log_ndtr(-(phi_target - mean_out) / std_out)
        mean_in, std_in = _gaussian(phi_shadow, in_mask, self.std_in_, self._per_example)
        return _log_normal(phi_target, mean_in, std_in) - _log_normal(phi_target, mean_out, std_out)

    def _shadow_confidence(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """``phi`` of every shadow on every example: ``(S, N)`` float64."""
        return np.stack([logit_confidence(query_logits(model, x, self.batch_size), y).numpy()
                         for model in self.shadows_])

    def _in_mask(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """bool ``(S, N)``: which shadows trained on each example (none for one outside the population)."""
        outside = np.zeros(self.shadows, dtype=bool)
        columns = [self._population_masks.get(sample_id, outside) for sample_id in sample_ids(x, y)]
        return np.stack(columns, axis=1) if columns else np.zeros((self.shadows, 0), dtype=bool)


def evaluate_membership(
    attack: MembershipAttack,
    target: Classifier,
    x_members: ArrayLike,
    y_members: ArrayLike,
    x_non_members: ArrayLike,
    y_non_members: ArrayLike,
    *,
    max_curve_points: int = MAX_CURVE_POINTS,
) -> MembershipResult:
    """Score known members ``(M, *shape)``, ``(M,)`` and non-members ``(K, *shape)``, ``(K,)`` and summarise.

    The scores in the result are ordered members first, then non-members. A fitted attack is expected
    (LiRA's population should hold both groups).
    """
    if not isinstance(attack, MembershipAttack):
        raise InputError(f"attack must have a name, score(target, x, y) and get_params(), got {type(attack).__name__}")
    member_scores = _scores(attack, target, x_members, y_members)
    non_member_scores = _scores(attack, target, x_non_members, y_non_members)
    scores = np.concatenate([member_scores, non_member_scores])
    truth = np.concatenate([np.ones(len(member_scores), dtype=bool), np.zeros(len(non_member_scores), dtype=bool)])
    return membership_result(scores, truth, attack=attack.name, params=attack.get_params(),
                             max_curve_points=max_curve_points)


# --- helpers ------------------------------------------------------------------------------------------


def _scores(attack: MembershipAttack, target: Classifier, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    scores = np.asarray(attack.score(target, x, y), dtype=np.float64)
    if scores.shape != (len(y),):
        raise InputError(f"{attack.name} returned scores of shape {scores.shape}; expected ({len(y)},)")
    return scores


def _population(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The population as float32 ``(P, ...)`` and int64 ``(P,)`` NumPy arrays, checked."""
    x_np = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
    if not isinstance(x_np, np.ndarray) or not isinstance(y_np, np.ndarray):
        raise InputError("population_x and population_y must be NumPy arrays or torch tensors")
    if y_np.ndim != 1 or x_np.ndim < 2 or len(x_np) != len(y_np):
        raise InputError(f"population_x (P, ...) and population_y (P,) must have the same length, got shapes "
                         f"{x_np.shape} and {y_np.shape}")
    if len(y_np) < 2:
        raise InputError(f"the population needs at least 2 examples to split into halves, got {len(y_np)}")
    if x_np.dtype.kind != "f" or not np.isfinite(x_np).all():
        raise InputError(f"population_x must be finite floating point, got dtype {x_np.dtype}")
    if y_np.dtype.kind not in "iu" or int(y_np.min()) < 0:
        raise InputError(f"population_y must hold integer class indices >= 0, got dtype {y_np.dtype}")
    return np.ascontiguousarray(x_np, dtype=np.float32), y_np.astype(np.int64)


def _train_shadow(train_shadow: ShadowTrainer, x: np.ndarray, y: np.ndarray, chosen: np.ndarray, seed: int
                  ) -> Classifier:
    """One shadow, on the population rows ``chosen`` (what an engine's worker runs)."""
    return train_shadow(x[chosen], y[chosen], seed)


def _check_shadow(model: Classifier, index: int, x: np.ndarray, y: np.ndarray) -> None:
    """A shadow must give scores for the population's inputs and labels."""
    what = f"LiRA's shadow {index}"
    require_access(model, "scores", what)
    if tuple(model.input_shape) != tuple(x.shape[1:]) or model.num_classes <= int(y.max()):
        raise InputError(f"{what} takes inputs of shape {tuple(model.input_shape)} with {model.num_classes} "
                         f"classes; the population has shape {tuple(x.shape[1:])} and labels up to {int(y.max())}")


def _masks_by_id(ids: list[str], in_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Each distinct example's IN column ``(S,)``; duplicates are IN wherever any copy is."""
    masks: dict[str, np.ndarray] = {}
    for column, sample_id in enumerate(ids):
        previous = masks.get(sample_id)
        masks[sample_id] = in_mask[:, column] if previous is None else previous | in_mask[:, column]
    return masks


def _pooled_std(phi: np.ndarray, mask: np.ndarray) -> float:
    """One standard deviation for all examples: squared deviations from each example's own mean, pooled.

    ``phi`` and ``mask`` are ``(S, P)``; examples with fewer than 2 observations add nothing.
    """
    counts = mask.sum(axis=0)
    means = np.where(mask, phi, 0.0).sum(axis=0) / np.maximum(counts, 1)
    squares = np.where(mask, (phi - means) ** 2, 0.0).sum(axis=0)
    usable = counts >= 2
    dof = int((counts[usable] - 1).sum())
    return max(math.sqrt(float(squares[usable].sum()) / dof), MIN_STD) if dof else 1.0


def _gaussian(phi: np.ndarray, mask: np.ndarray, global_std: float, per_example: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean ``(N,)`` of the masked ``phi`` ``(S, N)``, and the per-example or global std ``(N,)``."""
    counts = mask.sum(axis=0)
    means = np.where(mask, phi, 0.0).sum(axis=0) / np.maximum(counts, 1)
    if not per_example:
        return means, np.full(len(means), global_std)
    variance = np.where(mask, (phi - means) ** 2, 0.0).sum(axis=0) / np.maximum(counts - 1, 1)
    return means, np.maximum(np.sqrt(variance), MIN_STD)


def _log_normal(value: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((value - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
