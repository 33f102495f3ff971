"""An ensemble of the wide TRADES CNNs that ``benchmarks/harden.py`` trained, scanned as one model.

Run from the repository root, after the four runs of RESULTS.md "Harden and certify", section 2::

    .venv/bin/python benchmarks/harden_ensemble.py            # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/harden_ensemble.py --scan benchmarks/out/harden-ensemble-trades-wide/after/scan.json

It writes the manifest ``benchmarks/out/ensemble-trades-wide.yaml`` (the members' logits averaged with equal
weights: one CNN of four side by side), scans it exactly as ``bastion scan --model <manifest> --data fashion-mnist
--limit 1000 --eps 0.1 --suite standard --seed 0`` does (the settings of ``benchmarks/harden.py``'s scans), or
reads that scan's ``scan.json`` with ``--scan``, measures clean accuracy on all 10,000 test images and sums the
members' training times. Figures go to ``benchmarks/results/harden-ensemble-trades-wide.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from bastion.core.records import ScanRecord
from bastion.data.sources import load_dataset
from bastion.models.base import predict_in_batches
from bastion.models.loading import load_classifier
from bastion.scan.report.writer import write_reports
from bastion.scan.runner import ScanSettings, run_scan

ROOT = Path(__file__).resolve().parent
FACTORY = "bastion.models.zoo:fashion_wide_cnn"
#: Every wide TRADES run with final weights on disk (``benchmarks/preregistered/harden.txt``, 2026-11-23).
MEMBERS = ("trades4-wide", "trades45-ema20-wide", "trades5-e40-wide", "trades5-all-wide")
#: Training times with no results file: the beta-4 run was stopped after training and scanned by hand (RESULTS.md).
LOGGED_SECONDS = {"trades4-wide": 9099.0}


def write_manifest(out: Path) -> Path:
    """The ensemble manifest over the members' ``model.safetensors``; a missing member is an error."""
    members = []
    for name in MEMBERS:
        weights = ROOT / "out" / f"harden-adversarial-{name}" / "model.safetensors"
        if not weights.is_file():
            raise SystemExit(f"{weights} is missing: run benchmarks/harden.py for {name} first (RESULTS.md)")
        members.append({"model": FACTORY, "weights": str(weights.relative_to(out.parent))})
    out.write_text(yaml.safe_dump({"ensemble": {"combine": "logits", "members": members}}, sort_keys=False))
    return out


def training_seconds() -> dict[str, float | None]:
    """Each member's training time from its ``results/harden-adversarial-<name>.json``, else its logged time."""
    seconds: dict[str, float | None] = {}
    for name in MEMBERS:
        result = ROOT / "results" / f"harden-adversarial-{name}.json"
        recorded = json.loads(result.read_text()).get("training_seconds") if result.is_file() else None
        seconds[name] = recorded if recorded is not None else LOGGED_SECONDS.get(name)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=Path, default=None, help="an existing scan.json of the manifest to read")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = write_manifest(ROOT / "out" / "ensemble-trades-wide.yaml")
    loaded = load_classifier(str(manifest))
    if args.scan is None:
        started = time.perf_counter()
        outcome = run_scan(loaded, load_dataset("fashion-mnist", limit=1000),
                           ScanSettings(eps=[0.1], suite="standard", seed=0))
        write_reports(outcome, ROOT / "out" / "harden-ensemble-trades-wide" / "after")
        record, scan_seconds = outcome.record, time.perf_counter() - started
    else:
        record, scan_seconds = ScanRecord.model_validate_json(args.scan.read_text()), None
    if record.model.sha256 != loaded.sha256:
        raise SystemExit(f"{args.scan} scanned another model (sha256 {record.model.sha256}, the manifest's "
                         f"{loaded.sha256})")
    test = load_dataset("fashion-mnist:test")
    predicted = predict_in_batches(loaded.classifier, torch.from_numpy(test.x)).cpu()
    seconds = training_seconds()
    result = {
        "members": list(MEMBERS), "combine": "logits", "manifest_sha256": loaded.sha256,
        "clean_accuracy": record.headline.clean_accuracy, "robust_accuracy_standard": record.headline.robust_accuracy,
        "eval_points": len(record.headline.samples), "scan_seconds": scan_seconds,
        "clean_accuracy_all_10000": float((predicted == torch.from_numpy(test.y)).float().mean()),
        "members_training_seconds": seconds,
        "training_seconds_total": sum(s for s in seconds.values() if s is not None),
    }
    out = ROOT / "results" / "harden-ensemble-trades-wide.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
