"""Hardening benchmark on Fashion-MNIST, linf eps 0.1: what ``bastion harden`` reaches on 2 CPU cores.

Run from the repository root (Fashion-MNIST from ``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/harden.py adversarial --method trades --epochs 10
    .venv/bin/python benchmarks/harden.py certified --method crown-ibp --epochs 30

Each run is exactly ``bastion harden`` (the same workflow, called in-process) on the 60,000
training images less the ``--val-fraction`` held out for validation (10% by default; 0 trains on all of them,
with ``--no-early-stop``), evaluated on the first ``--eval-points`` test images:

* ``adversarial``: ``fashion_strided_cnn`` trained by PGD-AT / TRADES / fast AT, then scanned with the
  ``standard`` suite (APGD-CE, APGD-T, Square) — target: clean >= 88%, robust >= 78%;
* ``certified``: ``fashion_small_cnn`` trained by IBP or CROWN-IBP, then certified with CROWN on the
  whole test set (10,000 images) — target: verified accuracy >= 70% at eps 0.1.

Training time is wall time on this machine with ``torch.set_num_threads(--threads)``.
The harden reports go to ``benchmarks/out/harden-<name>/``, the figures to
``benchmarks/results/harden-<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from bastion.data.sources import load_dataset
from bastion.models.loading import load_classifier
from bastion.workflows.certify import CertifySettings, run_certify
from bastion.workflows.harden import HardenSettings, run_harden
from bastion.workflows.report import write_certify_reports, write_harden_reports

FACTORIES = {"adversarial": "bastion.models.zoo:fashion_strided_cnn",
             "certified": "bastion.models.zoo:fashion_small_cnn"}
ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(FACTORIES))
    parser.add_argument("--method", default=None, help="default: trades (adversarial), crown-ibp (certified)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=None, help="attack steps (pgd, trades)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="further method options, e.g. eps_train=0.12 (numbers are parsed)")
    parser.add_argument("--eval-points", type=int, default=1000)
    parser.add_argument("--certify-points", type=int, default=10_000)
    parser.add_argument("--crown-points", type=int, default=1000)
    parser.add_argument("--no-early-stop", action="store_true")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the 60,000 training images held out for validation; 0: train on all")
    parser.add_argument("--patience", type=int, default=5,
                        help="epochs without a better validation robust accuracy before stopping "
                             "(may change on --resume)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factory", default=None, help="model factory, default: " + ", ".join(
        f"{kind}: {factory}" for kind, factory in FACTORIES.items()))
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--weight-average", type=float, default=None, metavar="DECAY",
                        help="keep (validate, save and scan) a moving average of the weights, e.g. 0.999")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    method = args.method or ("trades" if args.kind == "adversarial" else "crown-ibp")
    name = args.name or f"{args.kind}-{method}"
    out = ROOT / "out" / f"harden-{name}"

    options: dict[str, object] = {"steps": args.steps} if args.steps else {}
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = _number(value)
    settings = HardenSettings(method=method, eps=args.eps, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                              schedule=args.schedule, options=options, early_stop=not args.no_early_stop,
                              patience=args.patience, val_fraction=args.val_fraction,
                              eval_limit=args.eval_points, resume=args.resume, weight_average=args.weight_average)
    train = load_dataset("fashion-mnist:train")
    test = load_dataset("fashion-mnist")
    factory = args.factory or FACTORIES[args.kind]

    def load(weights: str | None):
        return load_classifier(factory, weights=weights)

    print(f"harden {name}: {factory}, {method}, {args.epochs} epochs, {args.threads} thread(s)", flush=True)
    outcome = run_harden(load, None, train, test, settings, out,
                         progress=lambda task, done, total: _log_epochs(task, done, total))
    write_harden_reports(outcome.record, out)
    cost = outcome.record.cost
    result: dict[str, object] = {
        "name": name, "factory": factory, "method": method, "epochs_planned": args.epochs,
        "epochs_run": outcome.record.training["epochs"], "best_epoch": outcome.record.training.get("best_epoch"),
        "options": options, "weight_average": args.weight_average, "val_fraction": args.val_fraction,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "training_seconds": cost.training_seconds, "clean_accuracy": cost.clean_accuracy_after,
        "robust_accuracy_standard": cost.robust_accuracy_after, "eval_points": args.eval_points,
        "report": str(out / "harden.html"),
    }
    if args.kind == "certified":
        result |= _certify_whole_test_set(outcome, test, args, out)
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / f"harden-{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _certify_whole_test_set(outcome, test, args, out: Path) -> dict[str, object]:
    """CROWN verified accuracy of the trained network on ``--certify-points`` test images."""
    from bastion.models.loading import LoadedModel

    limited = test if args.certify_points >= len(test) else load_dataset("fashion-mnist", limit=args.certify_points)
    loaded = LoadedModel(classifier=outcome.classifier, description=str(outcome.weights), sha256=None, kind="torch")
    figures: dict[str, object] = {}
    for method in ("ibp", "crown-ibp", "crown"):
        # Full CROWN costs seconds per batch on a CNN: it gets the first --crown-points only.
        data = limited if method != "crown" else load_dataset("fashion-mnist", limit=args.crown_points)
        started = time.perf_counter()
        record = run_certify(loaded, data, CertifySettings(method=method, eps=args.eps, radii=[args.eps],
                                                            batch_size=256, attack=False))
        write_certify_reports(record, out / f"certify-{method}")
        figures[f"verified_accuracy_{method}"] = record.certified_accuracy
        figures[f"certify_seconds_{method}"] = time.perf_counter() - started
        figures[f"certify_points_{method}"] = len(data)
        figures[f"clean_accuracy_{method}_points"] = record.clean_accuracy
    return figures


def _log_epochs(task: str, done: int, total: int) -> None:
    if task == "training epochs":
        print(f"  epoch {done}/{total} at {time.strftime('%H:%M:%S')}", flush=True)


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


if __name__ == "__main__":
    main()
