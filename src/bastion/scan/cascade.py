"""The cascade evaluator (AutoAttack's idea): each attack sees only the points still robust, and the
per-sample worst case is kept.

Because attacks draw per-sample keyed randomness and each attack's seed depends only on the scan
seed and the attack's name, an attack run on the surviving subset finds exactly what it would find
on those points alone; the cascade's robust accuracy is therefore never above any of its attacks'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bastion.attacks.base import EvasionAttack
from bastion.core.records import AttackSummary
from bastion.core.seeding import derive_seed, keyed_randint
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier, QueryCounter, predict_in_batches
from bastion.scan.progress import ProgressCallback, no_progress


@dataclass
class CascadeResult:
    """Per-sample worst cases after a cascade. All tensors have length N.

    Attributes:
        labels: ``(N,)`` int64 true labels.
        clean_predictions, adversarial_predictions: ``(N,)`` int64 (adversarial = clean where unbroken).
        robust: ``(N,)`` bool, correct on the clean input and unbroken.
        x_worst: ``(N, *input_shape)`` the worst case found (the clean input where unbroken).
        broken_by: name of the attack that first broke each sample, or ``None``.
        distances: ``(N,)`` size of the successful perturbation (0 where unbroken).
        queries: ``(N,)`` int64 model evaluations spent on each sample.
        attacks: one summary per attack, in cascade order.
    """

    labels: torch.Tensor
    clean_predictions: torch.Tensor
    adversarial_predictions: torch.Tensor
    robust: torch.Tensor
    x_worst: torch.Tensor
    broken_by: list[str | None]
    distances: torch.Tensor
    queries: torch.Tensor
    attacks: list[AttackSummary]

    @property
    def clean_accuracy(self) -> float:
        correct = self.clean_predictions == self.labels
        return float(correct.float().mean()) if len(correct) else 0.0

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean()) if len(self.robust) else 0.0


def random_targets(y: torch.Tensor, keys: torch.Tensor, seed: int, num_classes: int) -> torch.Tensor:
    """``(N,)`` target classes, uniformly among the wrong ones, keyed per sample (stable under subsets)."""
    offset = keyed_randint(keys, derive_seed(seed, "targets"), 0, num_classes - 1).to(y.device)
    return (y + 1 + offset) % num_classes


def run_cascade(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attacks: list[EvasionAttack],
    *,
    keys: torch.Tensor,
    seed: int = 0,
    batch_size: int = 128,
    targets: torch.Tensor | None = None,
    progress: ProgressCallback = no_progress,
) -> CascadeResult:
    """Run ``attacks`` in order, each on the samples still robust.

    Args:
        model: the classifier under test.
        x: ``(N, *input_shape)`` inputs in ``threat.bounds``. y: ``(N,)`` int64 labels.
        threat: budget and access; an attack the model or threat model cannot support is skipped
            and its summary says why.
        keys: ``(N,)`` int64 per-sample keys (from the sample ids).
        seed: the scan seed; attack ``a`` runs with ``derive_seed(seed, a.name)``.
        batch_size: samples per gradient attack call; score- and label-only attacks hold no autograd
            graph and take four times as many (their per-query overhead is then shared by more points).
        targets: ``(N,)`` target classes when ``threat.targeted`` (random wrong classes by default).
        progress: called after each batch as ``progress("<attack>", done, total)``.
    """
    counter = QueryCounter(model)
    clean = predict_in_batches(counter, x, batch_size)
    if threat.targeted and targets is None:
        targets = random_targets(y, keys, seed, model.num_classes)
    robust = clean == y
    worst = x.clone()
    adversarial = clean.clone()
    distances = x.new_zeros(len(x))
    queries = torch.ones(len(x), dtype=torch.int64)
    broken_by: list[str | None] = [None] * len(x)
    summaries: list[AttackSummary] = []
    for attack in attacks:
        summary = AttackSummary(name=attack.name, params=attack.params(), access=attack.access)
        summaries.append(summary)
        reason = attack.supports(model, threat)
        if reason is not None:
            summary.skipped = reason
            continue
        todo = robust.nonzero().squeeze(1)
        started = time.perf_counter()
        attack_seed = derive_seed(seed, attack.name)
        size = batch_size if attack.access == "white" else 4 * batch_size
        for start in range(0, len(todo), size):
            index = todo[start : start + size]
            result = attack(counter, x[index], y[index], threat, seed=attack_seed, keys=keys[index],
                            targets=None if targets is None else targets[index])
            queries[index.cpu()] += result.queries
            summary.queries += int(result.queries.sum())
            broken = index[result.success.to(index.device)]
            hit = result.success.to(x.device)
            robust[broken] = False
            worst[broken] = result.x_adv[hit]
            adversarial[broken] = result.predictions[hit]
            distances[broken] = result.distances[hit]
            for i in broken.tolist():
                broken_by[i] = attack.name
            summary.points_broken += len(broken)
            progress(attack.name, min(start + size, len(todo)), len(todo))
        summary.points_attacked = len(todo)
        summary.robust_accuracy_after = float(robust.float().mean()) if len(robust) else 0.0
        summary.seconds = time.perf_counter() - started
    return CascadeResult(y, clean, adversarial, robust, worst, broken_by, distances, queries, summaries)
