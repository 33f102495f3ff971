"""Sanity checks that flag an evaluation which may overestimate robustness (gradient masking).

Following Athalye et al. 2018 and Carlini et al. 2019 ("On Evaluating Adversarial Robustness"):
probability outputs, randomness, vanishing gradients, black-box attacks beating white-box ones,
and robust accuracy that does not fall as the budget grows.
"""

from __future__ import annotations

import torch

from bastion.attacks import losses
from bastion.attacks.gradients import logits_loss_and_gradient
from bastion.core.records import AttackSummary, EpsResult, SanityFlag
from bastion.models.base import Classifier

PROBE_SIZE = 128


def probe_model(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> list[SanityFlag]:
    """Checks on the model itself, run once per scan on up to 128 samples ``x`` ``(N, ...)``."""
    x, y = x[:PROBE_SIZE], y[:PROBE_SIZE]
    if model.access == "labels" or not len(x):
        return []
    with torch.no_grad():
        first, second = model.logits(x), model.logits(x)
    broken = _non_finite_outputs(first)
    flags = broken or [*_probability_outputs(first), *_randomness(first, second)]
    if model.access == "white":
        flags += _zero_gradients(model, x, y)
    return flags


def _non_finite_outputs(scores: torch.Tensor) -> list[SanityFlag]:
    rows = int((~torch.isfinite(scores)).any(dim=1).sum())
    if not rows:
        return []
    return [SanityFlag(
        check="non-finite-outputs",
        message=f"The model returns NaN or infinite scores for {rows} of the {len(scores)} samples probed: its "
        "predictions there, and the accuracies of this scan, mean nothing. Check the weights and the model's "
        "forward (a division by zero, a log of zero) before scanning again.",
    )]


def _probability_outputs(scores: torch.Tensor) -> list[SanityFlag]:
    in_unit_range = bool(((scores >= 0) & (scores <= 1)).all())
    sums_to_one = bool(((scores.sum(dim=1) - 1).abs() < 1e-3).all())
    if not (in_unit_range and sums_to_one):
        return []
    return [SanityFlag(
        check="probability-outputs",
        message="The model outputs probabilities, not logits: cross-entropy gradients through a final "
        "softmax vanish for confident points, so gradient attacks can fail without the model being "
        "robust. Remove the softmax from the model you scan; the standard suite's DLR loss and "
        "Square attack are less affected.",
    )]


def _randomness(first: torch.Tensor, second: torch.Tensor) -> list[SanityFlag]:
    difference = float((first - second).abs().max())
    if difference <= 1e-5 * max(1.0, float(first.abs().max())):
        return []
    return [SanityFlag(
        check="randomness",
        message=f"Two forward passes on the same inputs differ (by up to {difference:.3g}): the model "
        "is randomised, so single gradient samples are noisy and attacks underperform. Evaluate "
        "with an attack that averages gradients over the randomness (EOT), or fix the seed.",
    )]


def _zero_gradients(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> list[SanityFlag]:
    _, _, gradient = logits_loss_and_gradient(model, x, lambda z: losses.cross_entropy(z, y))
    zero = (gradient.flatten(1).abs().amax(dim=1) == 0).float().mean()
    if float(zero) < 0.05:
        return []
    return [SanityFlag(
        check="zero-gradients",
        message=f"{float(zero):.0%} of probed samples have an exactly zero input gradient of the "
        "cross-entropy loss: gradient attacks get no signal there (gradient masking or saturated "
        "outputs). Trust score-based (Square) and scale-invariant (DLR) attacks more than CE ones.",
    )]


def blackbox_beats_whitebox(summaries: list[AttackSummary]) -> list[SanityFlag]:
    """Flag black-box attacks that broke points every earlier white-box attack left standing."""
    ran_white = False
    flags = []
    for summary in summaries:
        if summary.skipped is not None:
            continue
        if summary.access == "white":
            ran_white = True
        elif ran_white and summary.points_broken > 0:
            flags.append(SanityFlag(
                check="black-box-beats-white-box",
                message=f"{summary.name} ({summary.access} access) broke {summary.points_broken} "
                "point(s) that the gradient attacks before it could not: a sign of gradient masking. "
                "The white-box numbers alone would overstate robustness.",
            ))
    return flags


def eps_curve_flags(results: list[EpsResult]) -> list[SanityFlag]:
    """Flag robust accuracy that rises with eps (a larger budget contains the smaller one)."""
    ordered = sorted(results, key=lambda r: r.eps)
    flags = []
    for smaller, larger in zip(ordered, ordered[1:], strict=False):
        if larger.robust_accuracy > smaller.robust_accuracy + 1e-9:
            flags.append(SanityFlag(
                check="non-monotone-eps",
                message=f"Robust accuracy rises from {smaller.robust_accuracy:.1%} at eps={smaller.eps:g} "
                f"to {larger.robust_accuracy:.1%} at eps={larger.eps:g}, though the larger budget "
                "contains the smaller one: the attacks are not converging at the larger eps.",
            ))
    return flags


def chance_level_flags(clean_accuracy: float, num_classes: int) -> list[SanityFlag]:
    """Flag a model whose clean accuracy is within 10 points of guessing: its robustness means nothing."""
    chance = 1.0 / num_classes
    if clean_accuracy >= chance + 0.1:
        return []
    return [SanityFlag(
        check="chance-level-accuracy",
        message=f"Clean accuracy {clean_accuracy:.1%} is close to chance ({chance:.1%}): the weights may "
        "be missing or wrong (a factory model without --weights starts from random weights), or the "
        "data may not match the model's preprocessing (--bounds, --mean, --std). Fix that before "
        "reading any robustness number.",
    )]
