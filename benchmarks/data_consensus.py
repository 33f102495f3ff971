"""``benchmarks/data.py consensus``: the poison consensus on small sets, clean and poisoned, over seeds.

Run from the repository root::

    .venv/bin/python benchmarks/data.py consensus [--seeds 6] [--rates 0,0.01,0.05]

The Fashion-MNIST benchmark (``poison``) has 6,000 images a class; the demo's digits have about
125. This one measures what the consensus does there, where natural sub-populations of a class are
as large as a backdoor. For each seed ``s`` and each rate (0 = a clean set), on scikit-learn digits'
training split (1,257 images):

1. BadNets (3x3 patch, target class ``s mod 10``) poisons ``rate`` of the images (none at rate 0);
2. ``digits_cnn`` is trained by :func:`bastion.defenses.training.train_classifier` (15 epochs, seed
   ``s``, one thread) and its penultimate features are taken;
3. :class:`~bastion.defenses.poison.PoisonConsensus` at a 2% budget, without and with the sweep:
   poisoned samples found, clean samples flagged, and what the sweep added.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from bastion.attacks.poisoning import BadNets
from bastion.data.sources import load_dataset
from bastion.defenses.poison import PoisonConsensus, penultimate_features
from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn


def consensus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0 .. seeds-1 (each also picks the target class)")
    parser.add_argument("--rates", default="0,0.01,0.05", help="poisoning rates, comma-separated (0 = clean)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--fp-budget", type=float, default=0.02)
    parser.add_argument("--out", default="data_consensus", help="results name under benchmarks/results/")


def run_consensus(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    torch.set_num_threads(1)
    train = load_dataset("digits:train")
    rates = [float(r) for r in args.rates.split(",")]
    cases = []
    log(f"consensus on digits ({len(train)} training images), budget {args.fp_budget:.0%}, seeds 0-{args.seeds - 1}")
    log(f"{'rate':>5} {'seed':>4} {'target':>6} {'found (no sweep)':>17} {'clean flagged':>14} "
        f"{'found (sweep)':>14} {'clean flagged':>14} {'swept':>6} {'added':>5}")
    for rate in rates:
        for seed in range(args.seeds):
            case = one_case(train.x, train.y, rate, seed, args)
            cases.append(case)
            plain, swept = case["no_sweep"], case["sweep"]
            log(f"{rate:5.2f} {seed:4d} {case['target'] if rate else '-':>6} "
                f"{plain['found']:>9}/{case['poisoned']:<7} {plain['clean_flagged']:>6} ({plain['fpr']:.2%}) "
                f"{swept['found']:>6}/{case['poisoned']:<7} {swept['clean_flagged']:>6} ({swept['fpr']:.2%}) "
                f"{str(case['swept_class']):>6} {case['added']:>5}")
    return {"benchmark": "consensus", "dataset": "digits:train", "fp_budget": args.fp_budget,
            "epochs": args.epochs, "cases": cases, "summary": summarise(cases, rates)}


def one_case(x: np.ndarray, y: np.ndarray, rate: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    target = seed % 10
    if rate > 0:
        poisoned_set = BadNets(target_class=target).poison(x, y, rate=rate, seed=seed)
        x, y, poisoned = poisoned_set.x, poisoned_set.y, np.asarray(poisoned_set.poisoned, dtype=bool)
    else:
        poisoned = np.zeros(len(y), dtype=bool)
    torch.manual_seed(seed)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    started = time.perf_counter()
    train_classifier(model, x, y, epochs=args.epochs, seed=seed)
    features = penultimate_features(model, x)
    plain = PoisonConsensus(fp_budget=args.fp_budget, sweep=False).fit(features, y)
    swept = PoisonConsensus(fp_budget=args.fp_budget).fit(features, y)
    sweep = swept.sweep_
    return {"rate": rate, "seed": seed, "target": target, "poisoned": int(poisoned.sum()),
            "no_sweep": counts(plain.flags_, poisoned), "sweep": counts(swept.flags_, poisoned),
            "swept_class": None if sweep is None else sweep.swept_class, "added": 0 if sweep is None else sweep.added,
            "seconds": time.perf_counter() - started}


def counts(flags: np.ndarray, poisoned: np.ndarray) -> dict[str, Any]:
    clean = ~poisoned
    return {"found": int(flags[poisoned].sum()), "clean_flagged": int(flags[clean].sum()),
            "fpr": float(flags[clean].mean())}


def summarise(cases: list[dict[str, Any]], rates: list[float]) -> dict[str, Any]:
    """Per rate and variant: total found of total poisoned, and the range of false-positive rates."""
    summary: dict[str, Any] = {}
    for rate in rates:
        chosen = [c for c in cases if c["rate"] == rate]
        summary[str(rate)] = {
            variant: {"found": sum(c[variant]["found"] for c in chosen), "poisoned": sum(c["poisoned"] for c in chosen),
                      "fpr_min": min(c[variant]["fpr"] for c in chosen),
                      "fpr_max": max(c[variant]["fpr"] for c in chosen),
                      "full_recall_cases": sum(c[variant]["found"] == c["poisoned"] for c in chosen)}
            for variant in ("no_sweep", "sweep")}
    return summary
