"""Membership inference through each output defense, next to the defense's cost: the privacy suite's defense table.

For every defense of :mod:`bastion.workflows.output_defenses` the model is put behind it and attacked
again, with what an attacker who sees only the hardened answers can do:

- the loss-threshold attack on the hardened scores; through a label-only answer it becomes the
  :class:`GapAttack` (a correct label means "member"), which is all a label reveals to it;
- LiRA with the shadows already trained, *mirrored*: the attacker sees the API's output format, so he
  passes his own shadows' answers through the same kind of defense (noise with his own key, not the
  defender's) and refits LiRA's Gaussians on them. No shadow is trained again; only LiRA's scoring and
  fitting of the Gaussians run per defense. A label-only defense leaves LiRA nothing to read: no row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bastion.attacks.extraction.substitute import predictions
from bastion.attacks.inference import LiRA, LossThreshold, MembershipResult, evaluate_membership
from bastion.attacks.inference.base import ArrayLike, labelled_batch
from bastion.core.seeding import derive_seed
from bastion.defenses.output import PostprocessedClassifier, accuracy_cost
from bastion.models.base import Classifier
from bastion.workflows.output_defenses import defense_steps, describe_steps
from bastion.workflows.privacy_records import MembershipSummary, PrivacyDefenseRow, PrivacySettings
from bastion.workflows.scan_common import Progress


class GapAttack:
    """The gap attack (Yeom et al., CSF 2018): score 1 for a correctly classified example, 0 otherwise.

    Needs only labels. Its AUC is ``0.5 + (train accuracy - test accuracy) / 2``, and since its scores
    take two values, its TPR at a low FPR is 0 unless almost every non-member is misclassified.

    Args:
        batch_size: inputs per query, default 512.
    """

    name = "gap"

    def __init__(self, *, batch_size: int = 512) -> None:
        self.batch_size = int(batch_size)

    def get_params(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}

    def score(self, target: Classifier, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Scores ``(N,)`` float64 in {0, 1} for ``x`` ``(N, *input_shape)`` and labels ``y`` ``(N,)``."""
        inputs, labels = labelled_batch(target, x, y)
        return (predictions(target, inputs, self.batch_size) == labels).double().numpy()


def defense_rows(
    model: Classifier,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    headline: dict[str, MembershipResult],
    lira: LiRA | None,
    population: tuple[np.ndarray, np.ndarray] | None,
    settings: PrivacySettings,
    say: Progress,
) -> tuple[list[PrivacyDefenseRow], list[str]]:
    """One row per defense in ``settings.defenses`` and notes on what was skipped.

    Args:
        model: the undefended model (local: a defense is put in front of it).
        data: members ``x`` ``(M, ...)``, ``y`` ``(M,)`` and non-members ``x`` ``(K, ...)``, ``y`` ``(K,)``.
        headline: the undefended attacks by name; the ``none`` row reuses them.
        lira: LiRA fitted for the headline (``None`` when it did not run), and the ``population`` it was
            fitted on (``x`` ``(P, ...)``, ``y`` ``(P,)``), for the mirrored refit.
    """
    x_in, y_in, x_out, y_out = data
    rows: list[PrivacyDefenseRow] = []
    notes: list[str] = []
    for name in settings.defenses:
        steps = defense_steps(name, num_classes=model.num_classes, seed=settings.seed)
        if steps is None:
            notes.append(f"The {name} defense was skipped: the model has only {model.num_classes} classes.")
            continue
        say(f"defense {name}: membership inference through the hardened answers")
        target: Classifier = model if name == "none" else PostprocessedClassifier(model, steps)
        if name == "none":
            loss = headline.get("loss-threshold") or headline["gap"]
            lira_result = headline.get("lira")
        else:
            attack = GapAttack(batch_size=settings.batch_size) if target.access == "labels" \
                else LossThreshold(batch_size=settings.batch_size)
            loss = evaluate_membership(attack, target, x_in, y_in, x_out, y_out)
            lira_result = None
            if lira is not None and population is not None and target.access != "labels":
                mirrored = _mirrored_lira(lira, population, name, model.num_classes, settings)
                lira_result = evaluate_membership(mirrored, target, x_in, y_in, x_out, y_out)
        rows.append(PrivacyDefenseRow(
            defense=name, steps=describe_steps(steps), access=target.access, loss=MembershipSummary.of(loss),
            lira=MembershipSummary.of(lira_result) if lira_result is not None else None,
            cost=accuracy_cost(model, target, x_out, y_out, batch_size=settings.batch_size),
        ))
    return rows, notes


def _mirrored_lira(lira: LiRA, population: tuple[np.ndarray, np.ndarray], name: str, num_classes: int,
                   settings: PrivacySettings) -> LiRA:
    """LiRA refitted on the trained shadows behind the same kind of defense (the attacker's own noise key)."""
    steps = defense_steps(name, num_classes=num_classes, seed=derive_seed(settings.seed, "attacker") % 2**31)
    hardened = iter([PostprocessedClassifier(shadow, steps or []) for shadow in lira.shadows_])
    # LiRA.fit draws the same IN/OUT split for the same seed and population and asks for the shadows in
    # order; handing back the trained ones (hardened) re-fits only the Gaussians.
    mirrored = LiRA(shadows=lira.shadows, online=lira.online, variance=lira.variance, seed=lira.seed,
                    batch_size=lira.batch_size)
    mirrored.fit(population[0], population[1], lambda x, y, seed: next(hardened))
    if not np.array_equal(mirrored.in_mask_, lira.in_mask_):  # a changed LiRA.fit would break the reuse
        raise RuntimeError("LiRA drew another IN/OUT split when refitted; the mirrored shadows do not match")
    return mirrored
