"""Privacy benchmarks (issue 5): bastion side by side with ART, in one run, on the same models and points.

Run from the repository root (``make bench-install`` first, for ART; Fashion-MNIST from ``apt-get
install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/privacy.py membership [--shadows 16] [--population 20000] [--epochs 30]
    .venv/bin/python benchmarks/privacy.py extraction [--budget 5000] [--victim-epochs 10]
    .venv/bin/python benchmarks/privacy.py membership --quick --out quick_membership   # smoke run, minutes

Results go to ``benchmarks/results/<--out>.json`` and ``.log`` (default ``privacy_membership`` and
``privacy_extraction``). Every model is ``bastion.models.zoo:fashion_small_cnn`` (two stride-2
convolutions of 16 and 32 channels, a 100-unit hidden layer); training time is wall time with
``torch.set_num_threads(--threads)``. ``--seed`` (default 0) derives every seed below.

``membership`` (Carlini et al.'s protocol, on a population small enough for 16 shadows on 2 cores):

1. Population: ``--population`` images (default 20,000) drawn at random from the 60,000 Fashion-MNIST
   training images, after exact duplicate images are dropped (a duplicate would be a member and a
   non-member at once).
2. Target: trained on a random half of the population (its *members*); the other half are its
   *non-members*. Target and shadows share one recipe, :func:`bastion.attacks.inference.shadow_trainer`:
   :func:`bastion.defenses.training.train_classifier` (cross-entropy, Adam at 1e-3, constant rate,
   batches of 64, ``--epochs`` epochs), each model with its own seed.
3. Evaluation points: ``--eval`` members and ``--eval`` non-members (default 2,000 + 2,000) drawn at
   random from the two halves. Every attack below scores exactly these points (except the optional
   label-only attack: a subset, see 6). For each attack, on its scores, with bastion's metrics:
   ROC AUC, TPR at 1% and at 0.1% FPR (:func:`~bastion.attacks.inference.membership_result`; with
   2,000 non-members 0.1% allows 2 false positives), and the empirical epsilon lower bound
   (:func:`~bastion.attacks.inference.epsilon_lower_bound`, delta 1e-5, 95% confidence, thresholds
   searched with the Bonferroni correction; the target is not DP-trained, the bound is what the
   scores prove).
4. bastion: :class:`~bastion.attacks.inference.LossThreshold` (``log p_y``), the same calibrated per
   class on the attack-training split of 5 (its labels only: it never reads membership), and
   :class:`~bastion.attacks.inference.LiRA` online and offline from one set of ``--shadows`` shadow
   models (default 16), trained by the recipe of 2 on random halves of the whole population (each
   example IN for exactly ``shadows / 2``; the offline attack reuses the online one's shadows);
   variance ``"auto"`` (global below 64 shadows). LiRA knows the population, never the target's
   membership.
5. ART 1.20 (``art.attacks.inference.membership_inference``), on the same target through
   ``PyTorchClassifier`` (its ``predict`` gives the target's logits): ``MembershipInferenceBlackBoxRuleBased``
   (no fitting: "a correctly classified point is a member"; its scores are 0/1) and
   ``MembershipInferenceBlackBox(input_type="prediction")`` with ``attack_model_type="nn"`` (ART's
   defaults: 100 epochs, batches of 100, lr 1e-4, standard scaling; ``--art-nn-epochs``) and
   ``"rf"`` (scikit-learn's defaults). ART's black-box attack is supervised, so it is fitted on an
   **attack-training split disjoint from the evaluation points**, with the true membership: the
   target's members that are not evaluation points (``x``, ``y``) and its non-members that are not
   evaluation points (``test_x``, ``test_y``), ``--art-fit`` of each (default all of them:
   ``population / 2 - eval`` each, 8,000 + 8,000). That is knowledge LiRA does not get. Scores:
   ``infer(x, y, probabilities=True)`` (the member column) on the evaluation points of 3.
6. ``--label-only`` adds ART's ``LabelOnlyDecisionBoundary`` (HopSkipJump distances; slow):
   ``calibrate_distance_threshold`` on the first ``--label-only-points`` members and non-members of
   the attack-training split, scored on the first ``--label-only-points`` of each evaluation group
   (so its 0.1% figure is a TPR at zero false positives below 1,000 non-members). Its calibration
   bins are cleared before ``infer(..., probabilities=True)``, which then returns the sigmoid of the
   HSJ distance minus the threshold: a score monotone in the distance (the bins' accuracies are not).
   HopSkipJump settings: ``--hsj-max-iter``, ``--hsj-max-eval``, ``--hsj-init-eval``.

Every attack's seconds include its fitting: LiRA's the training of its shadows (shared by online
and offline), ART's black-box its attack model's.

Headline: LiRA online's TPR at 0.1% FPR divided by the best ART attack's (issue 5's target: >= 3x).

``extraction`` (Knockoff Nets with label-only answers):

1. Victim: trained on the 60,000 training images by ``train_classifier`` (Adam at 1e-3, batches of
   64, ``--victim-epochs`` epochs, default 10); its accuracy on the evaluation images is reported.
2. Attacker pool: Fashion-MNIST test images 0..7,999 (the victim never saw them); evaluation:
   test images 8,000..9,999 (never queried, never trained on). Fidelity = agreement of the copy's
   labels with the victim's on the evaluation images; accuracy = against their true labels.
3. Label-only victim: bastion's attacks query ``LabelOnly().wrap(victim)`` (access ``"labels"``,
   one-hot answers); ART's query a ``PyTorchClassifier`` over a module that returns the one-hot top
   label of the same victim (and counts the samples sent to it: ART's "queries").
4. bastion :class:`~bastion.attacks.extraction.KnockoffNets`, ``"random"`` and ``"adaptive"`` (10
   k-means groups of the pool, reward ``"all"``, rounds of 20), ``output="labels"``, budget
   ``--budget`` (default 5,000), curve at ``--checkpoints`` (default 500, 1000, 2000, 5000): every
   point a fresh copy trained by :class:`~bastion.attacks.extraction.CopyTraining` (Adam at 1e-3,
   batches of 32, ``--copy-epochs`` epochs, default 30, at least 1,000 steps). Its wall time
   includes the curve's smaller copies.
5. ART ``KnockoffNets`` (``"random"``, ``"adaptive"``) and ``CopycatCNN``, ``use_probability=False``,
   ``nb_stolen = --budget``: the thieved classifier is a ``PyTorchClassifier`` over a fresh copy
   architecture (cross-entropy, Adam at 1e-3), ``batch_size_fit=32`` and ``nb_epochs`` = the epochs
   bastion's copy takes at that budget (``CopyTraining.epochs_for``), so both copies take the same
   optimiser steps on ``--budget`` answers. ART's adaptive strategy takes its arms from the ``y``
   given to ``extract``: by default the same k-means groups bastion's adaptive run uses
   (``--art-adaptive-arms labels`` passes the pool's true labels instead, as ART's examples do: side
   knowledge an attacker with unlabelled data lacks). Its reward is ``"loss"`` (``--art-adaptive-reward``):
   ART's ``"all"`` divides each reward by its running standard deviation, which is 0 for the certainty
   reward on one-hot answers (always 1), so the policy becomes NaN and ``extract`` raises. It draws
   pool points with replacement and fits
   the thieved model one step per query before its final fit. ART seeds from NumPy's global
   generator, set from ``--seed`` before each run. ``--art-curve`` runs ART at every checkpoint too.

Target (issue 5): bastion's fidelity >= 90% with <= 5,000 label-only queries.

``--quick`` replaces the sizes by a smoke configuration (``QUICK_MEMBERSHIP``, ``QUICK_EXTRACTION``:
small population and budget, one epoch, four shadows) that checks the script end to end; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from data import Log  # this script's folder is on sys.path
from torch import nn

from bastion.attacks.extraction import CopyTraining, KnockoffNets
from bastion.attacks.extraction.bandit import pool_groups
from bastion.attacks.inference import (
    LiRA,
    LossThreshold,
    epsilon_lower_bound,
    evaluate_membership,
    membership_result,
    shadow_trainer,
)
from bastion.core.seeding import derive_seed
from bastion.data.sources import load_dataset
from bastion.defenses.output import LabelOnly
from bastion.defenses.training import train_classifier
from bastion.models.base import Classifier, predict_in_batches
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_small_cnn

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE, CLASSES = (1, 28, 28), 10
#: delta of the audited guarantee for the empirical epsilon bound.
DELTA = 1e-5
QUICK_MEMBERSHIP = {"population": 2000, "eval": 200, "shadows": 4, "epochs": 1, "art_fit": None,
                    "art_nn_epochs": 5, "label_only_points": 10, "hsj_max_iter": 2, "hsj_max_eval": 100,
                    "hsj_init_eval": 10}
QUICK_EXTRACTION = {"victim_epochs": 1, "budget": 400, "checkpoints": "100,200,400", "copy_epochs": 1,
                    "min_steps": 0}


# ------------------------------------------------------------------------------------------ membership


def membership_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--population", type=int, default=20_000, help="images drawn from Fashion-MNIST train")
    parser.add_argument("--eval", type=int, default=2000, help="evaluation members, and as many non-members")
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the target and of every shadow")
    parser.add_argument("--art-fit", type=int, default=None,
                        help="ART's attack-training members, and as many non-members (default: all left)")
    parser.add_argument("--art-nn-epochs", type=int, default=100, help="ART's nn attack model (its default 100)")
    parser.add_argument("--label-only", action="store_true", help="also ART's LabelOnlyDecisionBoundary (slow)")
    parser.add_argument("--label-only-points", type=int, default=200, help="per side, for calibration and scoring")
    parser.add_argument("--hsj-max-iter", type=int, default=10)
    parser.add_argument("--hsj-max-eval", type=int, default=1000)
    parser.add_argument("--hsj-init-eval", type=int, default=100)
    common_arguments(parser, "privacy_membership")


def run_membership(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """Target, shadows, every attack on the same evaluation points; the figures for the JSON."""
    data = population_split(args)
    x, y = data["x"], data["y"]
    log(f"population: {len(y):,} Fashion-MNIST training images ({data['duplicates_dropped']} duplicate images "
        f"dropped first); target members {int(data['in_target'].sum()):,}; evaluation {args.eval:,} members + "
        f"{args.eval:,} non-members; ART's attack-training split {len(data['fit_members']):,} + "
        f"{len(data['fit_non_members']):,}")
    timings: list[float] = []
    trainer = timed_trainer(shadow_trainer(fashion_small_cnn, epochs=args.epochs), timings)
    target = trainer(x[data["in_target"]], y[data["in_target"]], derive_seed(args.seed, "target"))
    members, non_members = data["eval_members"], data["eval_non_members"]
    train_accuracy = accuracy(target, x[data["in_target"]], y[data["in_target"]])
    test_accuracy = accuracy(target, x[~data["in_target"]], y[~data["in_target"]])
    log(f"target: fashion_small_cnn, {args.epochs} epochs on {int(data['in_target'].sum()):,} images in "
        f"{timings[0]:.1f} s; accuracy on members {train_accuracy:.2%}, on non-members {test_accuracy:.2%}")
    scores: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}  # name -> (scores, truth, seconds)

    def bastion_attack(name: str, attack: Any, fit_seconds: float = 0.0) -> None:
        started = time.perf_counter()
        result = evaluate_membership(attack, target, x[members], y[members], x[non_members], y[non_members])
        scores[name] = (np.asarray(result.scores), np.asarray(result.is_member),
                        fit_seconds + time.perf_counter() - started)

    bastion_attack("bastion loss-threshold", LossThreshold())
    fit_points = np.concatenate([data["fit_members"], data["fit_non_members"]])
    started = time.perf_counter()
    per_class = LossThreshold(per_class=True).fit(target, x[fit_points], y[fit_points])
    bastion_attack("bastion loss-threshold per class", per_class, time.perf_counter() - started)
    started = time.perf_counter()
    cache: dict[int, Classifier] = {}
    online = LiRA(shadows=args.shadows, online=True, seed=args.seed).fit(x, y, cached(trainer, cache))
    lira_fit = time.perf_counter() - started
    shadow_seconds = timings[1:]
    log(f"LiRA: {args.shadows} shadows trained in {sum(shadow_seconds):.0f} s "
        f"({np.mean(shadow_seconds):.1f} s each on {len(y) // 2:,} images), fit {lira_fit:.0f} s in all")
    bastion_attack("bastion LiRA online", online, lira_fit)
    offline = LiRA(shadows=args.shadows, online=False, seed=args.seed).fit(x, y, cached(trainer, cache))
    bastion_attack("bastion LiRA offline", offline, lira_fit)  # the same shadows, from the cache
    scores |= art_membership(args, target, data, log)
    figures = {name: membership_figures(*entry) for name, entry in scores.items()}
    report_membership(figures, log)
    headline = lira_headline(figures)
    log("\n" + headline["text"])
    return {"config": config(args), "machine": machine(), "population": len(y),
            "duplicates_dropped": data["duplicates_dropped"], "eval_per_side": args.eval,
            "art_fit_per_side": len(data["fit_members"]),
            "target": {"factory": "bastion.models.zoo:fashion_small_cnn", "epochs": args.epochs,
                       "training_seconds": timings[0], "member_accuracy": train_accuracy,
                       "non_member_accuracy": test_accuracy},
            "shadow_training_seconds": shadow_seconds, "attacks": figures, "headline": headline}


def population_split(args: argparse.Namespace) -> dict[str, Any]:
    """The population, the target's membership, the evaluation points and ART's attack-training split."""
    train = load_dataset("fashion-mnist:train")
    digests = [hashlib.sha256(image.tobytes()).digest() for image in train.x]
    unique = np.sort(np.unique(digests, return_index=True)[1])
    rng = np.random.default_rng(derive_seed(args.seed, "population"))
    if not 2 * args.eval + 2 <= args.population <= len(unique):  # each half: the evaluation points and one more
        raise SystemExit(f"--population must lie in [2 * eval + 2, {len(unique)}], got {args.population}")
    chosen = np.sort(rng.choice(unique, args.population, replace=False))
    in_target = np.zeros(args.population, dtype=bool)
    in_target[rng.permutation(args.population)[: args.population // 2]] = True
    member_index, non_member_index = np.flatnonzero(in_target), np.flatnonzero(~in_target)
    eval_members = np.sort(rng.choice(member_index, args.eval, replace=False))
    eval_non_members = np.sort(rng.choice(non_member_index, args.eval, replace=False))
    fit_members = np.setdiff1d(member_index, eval_members)
    fit_non_members = np.setdiff1d(non_member_index, eval_non_members)
    fit = min(len(fit_members), len(fit_non_members), args.art_fit or len(fit_members))
    fit_members = np.sort(rng.choice(fit_members, fit, replace=False))
    fit_non_members = np.sort(rng.choice(fit_non_members, fit, replace=False))
    return {"x": np.ascontiguousarray(train.x[chosen]), "y": train.y[chosen].astype(np.int64),
            "in_target": in_target, "eval_members": eval_members, "eval_non_members": eval_non_members,
            "fit_members": fit_members, "fit_non_members": fit_non_members,
            "duplicates_dropped": len(train.y) - len(unique)}


def timed_trainer(trainer: Callable[[np.ndarray, np.ndarray, int], Classifier],
                  timings: list[float]) -> Callable[[np.ndarray, np.ndarray, int], Classifier]:
    def train(x: np.ndarray, y: np.ndarray, seed: int) -> Classifier:
        started = time.perf_counter()
        model = trainer(x, y, seed)
        timings.append(time.perf_counter() - started)
        return model

    return train


def cached(trainer: Callable[[np.ndarray, np.ndarray, int], Classifier],
           cache: dict[int, Classifier]) -> Callable[[np.ndarray, np.ndarray, int], Classifier]:
    """The trainer, remembering models by seed: LiRA's shadow ``i`` has the same seed and data in every fit."""
    def train(x: np.ndarray, y: np.ndarray, seed: int) -> Classifier:
        if seed not in cache:
            cache[seed] = trainer(x, y, seed)
        return cache[seed]

    return train


def art_membership(args: argparse.Namespace, target: TorchClassifier, data: dict[str, Any],
                   log: Log) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """ART's attacks on the same target: fitted on the attack-training split, scored on the evaluation points."""
    from art.attacks.inference.membership_inference import (
        LabelOnlyDecisionBoundary,
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )

    x, y = data["x"], data["y"]
    estimator = art_classifier(Float32(target.module))
    members, non_members = data["eval_members"], data["eval_non_members"]
    fit_members, fit_non_members = data["fit_members"], data["fit_non_members"]
    truth = np.concatenate([np.ones(len(members), bool), np.zeros(len(non_members), bool)])
    points = np.concatenate([members, non_members])
    results: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    started = time.perf_counter()
    rule = MembershipInferenceBlackBoxRuleBased(estimator)
    scored = rule.infer(x[points], np.eye(CLASSES, dtype=np.float32)[y[points]], probabilities=True)
    results["ART black-box rule-based"] = (np.asarray(scored)[:, 1], truth, time.perf_counter() - started)
    for kind in ("nn", "rf"):
        np.random.seed(derive_seed(args.seed, "art", kind) % 2**32)
        torch.manual_seed(derive_seed(args.seed, "art", kind))
        started = time.perf_counter()
        attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=kind,
                                             nn_model_epochs=args.art_nn_epochs)
        attack.fit(x=x[fit_members], y=y[fit_members], test_x=x[fit_non_members], test_y=y[fit_non_members])
        scored = attack.infer(x[points], y[points], probabilities=True)
        results[f"ART black-box {kind}"] = (np.asarray(scored, dtype=np.float64).reshape(-1), truth,
                                            time.perf_counter() - started)
    if args.label_only:
        n = args.label_only_points
        hsj = {"max_iter": args.hsj_max_iter, "max_eval": args.hsj_max_eval, "init_eval": args.hsj_init_eval,
               "verbose": False}
        np.random.seed(derive_seed(args.seed, "art", "label-only") % 2**32)
        started = time.perf_counter()
        attack = LabelOnlyDecisionBoundary(estimator)
        attack.calibrate_distance_threshold(x[fit_members[:n]], y[fit_members[:n]], x[fit_non_members[:n]],
                                            y[fit_non_members[:n]], **hsj)
        attack.threshold_bins = []  # score = sigmoid(distance - tau), monotone in the HSJ distance
        subset = np.concatenate([members[:n], non_members[:n]])
        scored = attack.infer(x[subset], y[subset], probabilities=True, **hsj)
        subset_truth = np.concatenate([np.ones(len(members[:n]), bool), np.zeros(len(non_members[:n]), bool)])
        results["ART label-only decision boundary"] = (np.asarray(scored)[:, 1], subset_truth,
                                                       time.perf_counter() - started)
        log(f"ART label-only: calibrated on {n} + {n} attack-training points, scored on {n} + {n} evaluation "
            f"points, HopSkipJump {hsj}")
    return results


def membership_figures(scores: np.ndarray, truth: np.ndarray, seconds: float) -> dict[str, Any]:
    result = membership_result(scores, truth, attack="")
    bound = epsilon_lower_bound(scores, truth, delta=DELTA)
    return {"auc": result.auc, "tpr_at_1pct": result.tpr_at_1pct, "tpr_at_01pct": result.tpr_at_01pct,
            "members": result.members, "non_members": result.non_members,
            "distinct_scores": int(len(np.unique(scores))), "epsilon_lower_bound": bound.epsilon,
            "epsilon_bound": bound.model_dump(), "seconds": seconds, "roc": {"fpr": result.fpr, "tpr": result.tpr}}


def report_membership(figures: dict[str, dict[str, Any]], log: Log) -> None:
    log("\n| attack | points | ROC AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | distinct scores | epsilon lower bound "
        "| seconds |\n|---|---|---|---|---|---|---|---|")
    for name, row in figures.items():
        log(f"| {name} | {row['members']:,} + {row['non_members']:,} | {row['auc']:.4f} | {row['tpr_at_1pct']:.2%} "
            f"| {row['tpr_at_01pct']:.2%} | {row['distinct_scores']:,} | {row['epsilon_lower_bound']:.3f} "
            f"| {row['seconds']:.1f} |")


def lira_headline(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """LiRA online's TPR at 0.1% (and 1%) FPR over the best ART attack's."""
    lira = figures["bastion LiRA online"]
    art = {name: row for name, row in figures.items() if name.startswith("ART")}
    best = max(art, key=lambda name: (art[name]["tpr_at_01pct"], art[name]["tpr_at_1pct"]))
    best_1 = max(row["tpr_at_1pct"] for row in art.values())
    ratio, ratio_1 = _ratio(lira["tpr_at_01pct"], art[best]["tpr_at_01pct"]), _ratio(lira["tpr_at_1pct"], best_1)
    met = lira["tpr_at_01pct"] > 0 and (ratio is None or ratio >= 3)  # None: ART found no member at all
    text = (f"headline: LiRA online TPR at 0.1% FPR {lira['tpr_at_01pct']:.2%} against ART's best ({best}) "
            f"{art[best]['tpr_at_01pct']:.2%}: {_times(ratio)} (target >= 3x: {'met' if met else 'NOT met'}); "
            f"at 1% FPR {lira['tpr_at_1pct']:.2%} against {best_1:.2%}: {_times(ratio_1)}")
    return {"lira_tpr_at_01pct": lira["tpr_at_01pct"], "art_best": best,
            "art_best_tpr_at_01pct": art[best]["tpr_at_01pct"], "ratio_at_01pct": ratio,
            "ratio_at_1pct": ratio_1, "target_met": met, "text": text}


def _ratio(ours: float, theirs: float) -> float | None:
    """``ours / theirs``; ``None`` when ``theirs`` is 0 (no finite ratio)."""
    return ours / theirs if theirs else None


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "no ratio (ART's TPR is 0)"


# ------------------------------------------------------------------------------------------ extraction


def extraction_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--victim-epochs", type=int, default=10)
    parser.add_argument("--pool", type=int, default=8000, help="test images 0..pool-1 are the attacker's pool")
    parser.add_argument("--budget", type=int, default=5000, help="label-only victim queries")
    parser.add_argument("--checkpoints", default="500,1000,2000,5000", help="bastion's curve, comma-separated")
    parser.add_argument("--copy-epochs", type=int, default=30, help="CopyTraining epochs (ART: the same steps)")
    parser.add_argument("--min-steps", type=int, default=1000, help="CopyTraining's least optimiser steps")
    parser.add_argument("--art-adaptive-arms", choices=("kmeans", "labels"), default="kmeans",
                        help="the y ART's adaptive Knockoff gets: bastion's k-means groups or the true labels")
    parser.add_argument("--art-adaptive-reward", choices=("loss", "div", "cert", "all"), default="loss",
                        help="ART's adaptive reward ('all' fails on label-only answers: see the docstring)")
    parser.add_argument("--art-curve", action="store_true", help="run ART at every checkpoint, not only the budget")
    parser.add_argument("--no-art", action="store_true")
    common_arguments(parser, "privacy_extraction")


def run_extraction(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    train, test = load_dataset("fashion-mnist:train"), load_dataset("fashion-mnist:test")
    pool, x_eval, y_eval = test.x[: args.pool], test.x[args.pool:], test.y[args.pool:].astype(np.int64)
    if not 0 < args.pool < len(test.y):
        raise SystemExit(f"--pool must lie in 1..{len(test.y) - 1}")
    torch.manual_seed(derive_seed(args.seed, "victim"))
    victim = TorchClassifier(fashion_small_cnn(), SHAPE, CLASSES)
    started = time.perf_counter()
    train_classifier(victim, train.x, train.y, epochs=args.victim_epochs, seed=derive_seed(args.seed, "victim"))
    victim_seconds = time.perf_counter() - started
    victim_labels = labels_of(victim, x_eval)
    victim_accuracy = float((victim_labels == y_eval).mean())
    log(f"victim: fashion_small_cnn, {args.victim_epochs} epochs on 60,000 images in {victim_seconds:.0f} s; "
        f"accuracy {victim_accuracy:.2%} on test images {args.pool:,}..{len(test.y) - 1:,}; pool: test images "
        f"0..{args.pool - 1:,}; budget {args.budget:,} label-only queries")
    training = CopyTraining(epochs=args.copy_epochs, min_steps=args.min_steps)
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.budget} | {args.budget})
    label_only = LabelOnly().wrap(victim)
    figures: dict[str, dict[str, Any]] = {}
    for strategy in ("random", "adaptive"):
        attack = KnockoffNets(fashion_small_cnn, strategy=strategy, output="labels", training=training)
        started = time.perf_counter()
        result = attack.extract(label_only, pool, budget=args.budget, x_eval=x_eval, y_eval=y_eval,
                                checkpoints=checkpoints, seed=args.seed)
        seconds = time.perf_counter() - started
        figures[f"bastion KnockoffNets {strategy}"] = {
            "queries": result.queries, "fidelity": result.fidelity, "accuracy": result.accuracy, "seconds": seconds,
            "targets": result.record.targets, "curve": [point.model_dump() for point in result.curve]}
        log(f"bastion KnockoffNets {strategy}: " + ", ".join(
            f"{p.queries:,} queries: fidelity {p.fidelity:.2%}, accuracy {p.accuracy:.2%}" for p in result.curve)
            + f" ({seconds:.0f} s)")
    if not args.no_art:
        figures |= art_extraction(args, victim, pool, x_eval, y_eval, victim_labels, training, checkpoints, log)
    report_extraction(figures, args.budget, log)
    best = max((row["fidelity"] for name, row in figures.items() if name.startswith("bastion")), default=0.0)
    met = best >= 0.90 and args.budget <= 5000
    log(f"\ntarget (fidelity >= 90% with <= 5,000 label-only queries): bastion's best {best:.2%} with "
        f"{args.budget:,} queries: {'met' if met else 'NOT met'}")
    return {"config": config(args), "machine": machine(),
            "victim": {"factory": "bastion.models.zoo:fashion_small_cnn", "epochs": args.victim_epochs,
                       "training_seconds": victim_seconds, "accuracy": victim_accuracy},
            "pool": f"test 0..{args.pool - 1}", "eval": f"test {args.pool}..{len(test.y) - 1}",
            "copy_training": training.params(), "attacks": figures,
            "target": {"bastion_best_fidelity": best, "met": met}}


class Float32(nn.Module):
    """``module`` on float32 inputs: ART's HopSkipJump hands float64 images to ``predict`` under NumPy 2."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float())


class OneHotLabels(nn.Module):
    """A label-only view of ``module`` for ART: the one-hot top label; counts the samples it answers."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.queries = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        with torch.no_grad():
            return F.one_hot(self.module(x).argmax(dim=1), CLASSES).float()


def art_extraction(args: argparse.Namespace, victim: TorchClassifier, pool: np.ndarray, x_eval: np.ndarray,
                   y_eval: np.ndarray, victim_labels: np.ndarray, training: CopyTraining, checkpoints: list[int],
                   log: Log) -> dict[str, dict[str, Any]]:
    """ART's Knockoff (random, adaptive) and Copycat against the label-only victim, copies like bastion's."""
    from art.attacks.extraction import CopycatCNN
    from art.attacks.extraction import KnockoffNets as ArtKnockoffNets

    if args.art_adaptive_arms == "kmeans":  # bastion's adaptive groups: the same call, the same seed
        arms = pool_groups(torch.from_numpy(pool), None, 10, derive_seed(args.seed, "knockoff", "groups"))
    else:
        arms = load_dataset("fashion-mnist:test").y[: args.pool].astype(np.int64)
    counter = OneHotLabels(victim.module)
    estimator = art_classifier(counter)
    attacks: dict[str, Callable[[int, int], Any]] = {
        "ART KnockoffNets random": lambda n, epochs: ArtKnockoffNets(
            estimator, batch_size_fit=training.batch_size, batch_size_query=256, nb_epochs=epochs, nb_stolen=n,
            sampling_strategy="random", verbose=False),
        "ART KnockoffNets adaptive": lambda n, epochs: ArtKnockoffNets(
            estimator, batch_size_fit=training.batch_size, batch_size_query=256, nb_epochs=epochs, nb_stolen=n,
            sampling_strategy="adaptive", reward=args.art_adaptive_reward, verbose=False),
        "ART CopycatCNN": lambda n, epochs: CopycatCNN(
            estimator, batch_size_fit=training.batch_size, batch_size_query=256, nb_epochs=epochs, nb_stolen=n),
    }
    figures: dict[str, dict[str, Any]] = {}
    for name, build in attacks.items():
        curve = []
        started = time.perf_counter()
        for n in checkpoints if args.art_curve else [args.budget]:
            np.random.seed(derive_seed(args.seed, name, n) % 2**32)
            torch.manual_seed(derive_seed(args.seed, name, n))
            thieved = art_classifier(fashion_small_cnn(), trainable=True)
            counter.queries = 0
            stolen = build(n, training.epochs_for(n)).extract(pool, y=arms if "adaptive" in name else None,
                                                               thieved_classifier=thieved)
            copy_labels = stolen.predict(x_eval, batch_size=512).argmax(axis=1)
            curve.append({"queries": counter.queries, "nb_stolen": n, "epochs": training.epochs_for(n),
                          "fidelity": float((copy_labels == victim_labels).mean()),
                          "accuracy": float((copy_labels == y_eval).mean())})
        seconds = time.perf_counter() - started
        figures[name] = {**curve[-1], "seconds": seconds, "curve": curve}
        log(f"{name}: " + ", ".join(f"{p['nb_stolen']:,} stolen ({p['queries']:,} victim queries, {p['epochs']} "
                                    f"epochs): fidelity {p['fidelity']:.2%}, accuracy {p['accuracy']:.2%}"
                                    for p in curve) + f" ({seconds:.0f} s)")
    return figures


def report_extraction(figures: dict[str, dict[str, Any]], budget: int, log: Log) -> None:
    log(f"\n| attack (label-only victim, budget {budget:,}) | victim queries | fidelity | copy accuracy | seconds |"
        "\n|---|---|---|---|---|")
    for name, row in figures.items():
        log(f"| {name} | {row['queries']:,} | {row['fidelity']:.2%} | {row['accuracy']:.2%} | {row['seconds']:.0f} |")


# ------------------------------------------------------------------------------------------ shared


def common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke configuration (figures mean nothing)")
    parser.add_argument("--out", default=out, help="results name under benchmarks/results/")


def art_classifier(module: nn.Module, *, trainable: bool = False) -> Any:
    """ART's ``PyTorchClassifier`` over ``module`` (Fashion-MNIST shape, [0, 1]); with Adam at 1e-3 when trained."""
    from art.estimators.classification import PyTorchClassifier

    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3) if trainable else None
    return PyTorchClassifier(model=module, loss=nn.CrossEntropyLoss(), optimizer=optimizer, input_shape=SHAPE,
                             nb_classes=CLASSES, clip_values=(0.0, 1.0), device_type="cpu")


def labels_of(model: Classifier, x: np.ndarray) -> np.ndarray:
    return predict_in_batches(model, torch.from_numpy(x)).numpy()


def accuracy(model: Classifier, x: np.ndarray, y: np.ndarray) -> float:
    return float((labels_of(model, x) == y).mean())


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(args).items() if key != "run"}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "art": _art_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(), "load_average_after": os.getloadavg()}


def _art_version() -> str:
    import art

    return art.__version__


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., dict[str, Any]],
                             dict[str, Any]]] = {
    "membership": ("LiRA (online, offline), the loss threshold and ART's membership attacks on one target",
                   membership_arguments, run_membership, QUICK_MEMBERSHIP),
    "extraction": ("Knockoff Nets (random, adaptive) against a label-only victim, with ART's Knockoff and Copycat",
                   extraction_arguments, run_extraction, QUICK_EXTRACTION),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run, quick) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run, quick_settings=quick)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in args.quick_settings.items():
            setattr(args, key, value)
    del args.quick_settings
    torch.set_num_threads(args.threads)
    log = Log()
    log(f"privacy {args.command}: " + " ".join(f"{k}={v}" for k, v in config(args).items() if k != "command"))
    started = time.perf_counter()
    results = args.run(args, log)
    results["wall_seconds"] = time.perf_counter() - started
    log(f"wall time {results['wall_seconds']:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=2, default=float))
    log.write(RESULTS / f"{args.out}.log")


if __name__ == "__main__":
    main()
