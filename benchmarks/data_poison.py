"""``benchmarks/data.py poison``: BadNets on Fashion-MNIST, found by the audit, quarantined, retrained.

Run from the repository root (``make bench-install`` first, for ART)::

    .venv/bin/python benchmarks/data.py poison [--rates 0.01,0.05] [--epochs 5] [--no-art]

For each poisoning rate (default 1% and 5% of the 60,000 training images), with one training recipe
for every model (``bastion.models.zoo:fashion_strided_cnn``, Adam 1e-3 with a cosine schedule,
``--epochs`` epochs, batch 128, seed 0, ``--threads`` threads):

1. BadNets (a 3x3 white patch in the bottom-right corner, 1 pixel from the edges, relabelled to class
   0) poisons the training set; the poisoned model's clean test accuracy and attack success rate
   (triggered test images of other classes classified as class 0) are measured;
2. the audit that ``bastion data audit`` runs (:func:`bastion.workflows.audit.run_audit`, checks
   ``label-issues`` and ``poison``, false-positive budget 2%) scores every training sample from the
   poisoned model's penultimate features; recall (poisoned samples flagged) and false-positive rate
   (clean samples flagged) of spectral signatures, activation clustering and their consensus,
   side by side with ART's ``SpectralSignatureDefense`` and ``ActivationDefence`` on the identical
   model and set (ART's are given the true poisoning rate as ``expected_pp_poison``);
3. the consensus's flagged samples are removed (what ``bastion data quarantine --select suspected``
   does) and a model is retrained by the same recipe: its clean accuracy against a model trained on
   the unpoisoned set, and its attack success rate.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from bastion.attacks.poisoning import BadNets, attack_success_rate
from bastion.data.sources import Dataset, load_dataset
from bastion.defenses.training import CrossEntropy, fit
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_strided_cnn
from bastion.workflows.audit import AuditSettings, run_audit


def poison_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="0.01,0.05", help="poisoning rates, comma-separated")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp-budget", type=float, default=0.02)
    parser.add_argument("--no-art", action="store_true", help="skip ART's detectors")
    parser.add_argument("--rounds", type=int, default=1,
                        help="audit, quarantine and retrain this many times (each audit reads the last model)")
    parser.add_argument("--out", default="data_poison", help="results name under benchmarks/results/")


def train(x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[TorchClassifier, float]:
    """The benchmark's one recipe; returns the model and its training time in seconds."""
    torch.manual_seed(0)
    model = TorchClassifier(fashion_strided_cnn(), (1, 28, 28), 10)
    started = time.perf_counter()
    fit(model, x, y, CrossEntropy(), epochs=epochs, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine",
        seed=0)
    model.module.eval()
    return model, time.perf_counter() - started


def accuracy(model: TorchClassifier, x: np.ndarray, y: np.ndarray) -> float:
    predictions = torch.cat([model.predict(torch.from_numpy(x[i:i + 1000])) for i in range(0, len(x), 1000)])
    return float((predictions.numpy() == y).mean())


def rates(flags: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """Recall over poisoned samples and false-positive rate over clean ones."""
    flags = np.asarray(flags, dtype=bool)
    return {"flagged": int(flags.sum()), "recall": float(flags[poisoned].mean()),
            "fpr": float(flags[~poisoned].mean())}


def art_detectors(model: TorchClassifier, x: np.ndarray, y: np.ndarray, rate: float) -> dict[str, dict[str, Any]]:
    """ART's spectral signatures and activation clustering on the same model and set: flags and seconds."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model.module, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    one_hot = np.eye(10, dtype=np.float32)[y]
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    spectral = SpectralSignatureDefense(classifier, x, one_hot, batch_size=256, eps_multiplier=1.5,
                                        expected_pp_poison=rate)
    _, clean = spectral.detect_poison()
    results["art-spectral-signatures"] = {"flags": np.asarray(clean) == 0, "seconds": time.perf_counter() - started}
    started = time.perf_counter()
    activation = ActivationDefence(classifier, x, one_hot)
    _, clean = activation.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
    results["art-activation-defence"] = {"flags": np.asarray(clean) == 0, "seconds": time.perf_counter() - started}
    return results


def run_poison(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Every rate: poison, train, audit, compare with ART, quarantine, retrain. ``log(line)`` prints and keeps."""
    torch.set_num_threads(args.threads)
    train_set, test = load_dataset("fashion-mnist:train"), load_dataset("fashion-mnist:test")
    attack = BadNets(target_class=0, size=3)
    clean_model, clean_seconds = train(train_set.x, train_set.y, args.epochs)
    baseline = {"clean_accuracy": accuracy(clean_model, test.x, test.y), "training_seconds": clean_seconds,
                "asr": attack_success_rate(clean_model, test.x, test.y, attack)}
    log(f"unpoisoned model: clean accuracy {baseline['clean_accuracy']:.2%}, ASR {baseline['asr']:.2%} "
        f"(trained in {clean_seconds:.0f} s)")
    results: dict[str, Any] = {"baseline": baseline, "rates": {}}
    for rate in [float(r) for r in args.rates.split(",")]:
        results["rates"][f"{rate:g}"] = run_rate(args, log, rate, attack, train_set, test, baseline)
    return results


def run_rate(args: argparse.Namespace, log: Any, rate: float, attack: BadNets, train_set: Dataset, test: Dataset,
             baseline: dict[str, float]) -> dict[str, Any]:
    poisoned = attack.poison(train_set.x, train_set.y, rate=rate, seed=0)
    mask = poisoned.poisoned
    log(f"\n### BadNets at {rate:.0%}: {mask.sum():,} of {len(mask):,} training images poisoned (target class 0)")
    model, seconds = train(poisoned.x, poisoned.y, args.epochs)
    figures: dict[str, Any] = {"poisoned": int(mask.sum()), "training_seconds": seconds,
                               "clean_accuracy": accuracy(model, test.x, test.y),
                               "asr": attack_success_rate(model, test.x, test.y, attack)}
    log(f"poisoned model: clean accuracy {figures['clean_accuracy']:.2%}, ASR {figures['asr']:.2%} ({seconds:.0f} s)")
    dataset = Dataset(x=poisoned.x, y=poisoned.y, class_names=train_set.class_names,
                      description=f"Fashion-MNIST train, BadNets {rate:.0%}")
    started = time.perf_counter()
    record = run_audit(dataset, AuditSettings(checks=["label-issues", "poison"], fp_budget=args.fp_budget),
                       classifier=model)
    audit_seconds = time.perf_counter() - started
    detectors = {column.name: {"flags": np.asarray(column.flags), "seconds": None} for column in record.audits}
    if not args.no_art:
        detectors |= art_detectors(model, poisoned.x, np.asarray(poisoned.y), rate)
    log("\n| detector | flagged | recall (poisoned found) | false-positive rate | seconds |\n|---|---|---|---|---|")
    figures["detectors"] = {}
    for name, found in detectors.items():
        row = rates(found["flags"], mask) | {"seconds": found["seconds"]}
        figures["detectors"][name] = row
        seconds_text = f"{found['seconds']:.1f}" if found["seconds"] is not None else "(in the audit)"
        log(f"| {name} | {row['flagged']:,} | {row['recall']:.1%} | {row['fpr']:.2%} | {seconds_text} |")
    log(f"the whole audit (features, label issues, detectors, consensus): {audit_seconds:.1f} s")
    keep = ~np.asarray(record.column("poison-consensus").flags)
    figures["after_quarantine"] = []
    retrained = model  # the model the next audit reads
    for round_number in range(1, args.rounds + 1):
        if round_number > 1:  # audit what is left, with the model retrained on it
            left = Dataset(x=poisoned.x[keep], y=np.asarray(poisoned.y)[keep], class_names=train_set.class_names,
                           description=dataset.description)
            again = run_audit(left, AuditSettings(checks=["label-issues", "poison"], fp_budget=args.fp_budget),
                              classifier=retrained)
            keep[np.flatnonzero(keep)[np.asarray(again.column("poison-consensus").flags)]] = False
        retrained, retrain_seconds = train(poisoned.x[keep], np.asarray(poisoned.y)[keep], args.epochs)
        after = {"round": round_number, "removed": int((~keep).sum()), "poison_left": int(mask[keep].sum()),
                 "clean_removed": int((~keep & ~mask).sum()), "training_seconds": retrain_seconds,
                 "clean_accuracy": accuracy(retrained, test.x, test.y),
                 "asr": attack_success_rate(retrained, test.x, test.y, attack)}
        figures["after_quarantine"].append(after)
        log(f"round {round_number}: after quarantining {after['removed']:,} samples in all ({after['poison_left']} "
            f"poisoned left, {after['clean_removed']} clean removed) and retraining: clean accuracy "
            f"{after['clean_accuracy']:.2%} (unpoisoned model {baseline['clean_accuracy']:.2%}, difference "
            f"{100 * (after['clean_accuracy'] - baseline['clean_accuracy']):+.2f} points), ASR {after['asr']:.2%}")
    figures["audit_seconds"] = audit_seconds
    return figures

