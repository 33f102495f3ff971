"""Privacy attacks: what a trained model leaks about its training data.

- Membership inference (:mod:`.membership`): was this example in the training set? The loss-threshold
  attack (Yeom et al. 2018) and LiRA (Carlini et al. 2022) with shadow models (:mod:`.shadows`).
  Both need only the model's scores, so a remote endpoint can be the target.
- Their measure (:mod:`.metrics`): ROC AUC and, above all, the true-positive rate at 1% and 0.1%
  false positives, in a :class:`MembershipResult` for the evidence record.
- The privacy audit (:mod:`.epsilon`): an empirical lower bound on a training run's DP epsilon from
  membership scores (Jagielski et al. 2020), to set beside the DP accountant's epsilon.
- Model inversion (:mod:`.inversion`): MI-Face (Fredrikson et al. 2015) reconstructs a
  representative input per class by gradient descent; needs white-box access.

Example:
    >>> lira = LiRA(shadows=16).fit(x_population, y_population, shadow_trainer(digits_cnn, epochs=30))
    >>> result = evaluate_membership(lira, target, x_train, y_train, x_held_out, y_held_out)
    >>> result.auc, result.tpr_at_01pct
"""

from bastion.attacks.inference.base import MembershipAttack, logit_confidence
from bastion.attacks.inference.epsilon import EpsilonBound, clopper_pearson_upper, epsilon_lower_bound
from bastion.attacks.inference.inversion import InversionResult, MIFace
from bastion.attacks.inference.membership import LiRA, LossThreshold, evaluate_membership
from bastion.attacks.inference.metrics import (
    MembershipResult,
    membership_result,
    roc_auc,
    roc_points,
    thin_curve,
    tpr_at_fpr,
)
from bastion.attacks.inference.shadows import ShadowTrainer, shadow_membership, shadow_trainer

__all__ = [
    "EpsilonBound",
    "InversionResult",
    "LiRA",
    "LossThreshold",
    "MIFace",
    "MembershipAttack",
    "MembershipResult",
    "ShadowTrainer",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
    "evaluate_membership",
    "logit_confidence",
    "membership_result",
    "roc_auc",
    "roc_points",
    "shadow_membership",
    "shadow_trainer",
    "thin_curve",
    "tpr_at_fpr",
]
