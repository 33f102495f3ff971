"""Scan engines: a sharded scan on 1, 2 and 4 local Ray workers against the local engine.

Run from the repository root (Ray: ``.venv/bin/pip install --constraint constraints.txt 'ray>=2.9'``)::

    .venv/bin/python benchmarks/scale.py                     # results/scale.json, a few minutes
    .venv/bin/python benchmarks/scale.py --points 300 --suite quick --workers 1 2

What is measured: ``digits_cnn`` trained for 10 epochs on the first 1,200 scikit-learn digits, scanned on the
next ``--points`` (default all 597) with ``--suite`` (default ``standard``: APGD-CE, APGD-T, Square) at linf
eps ``--eps`` (default 0.1), seed 0. First the local engine with 1 torch thread and with 2; then, for each
``--workers`` count k, a fresh local Ray instance with k CPUs (every worker on 1 torch thread) and the scan in
k shards. Each scan's wall time is measured around ``run_scan``; Ray's start-up (``ray.init``) is timed apart.
Every sharded record is checked against the local one (robust accuracy, per-attack counts): a speed-up of a
scan that came out different would mean nothing.

On a 2-core machine, 2 workers is the most that can help (4 workers time-share 2 cores), and the local engine
with 2 torch threads is the fair baseline for them. On a machine or cluster with more cores the shards are
independent, so the speed-up should grow with the workers until the shards get too small to fill a batch
(each shard holds whole batches of ``--batch-size``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits

from bastion import __version__
from bastion.data.sources import Dataset
from bastion.defenses.training.loop import train_classifier
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn
from bastion.scan.engine import LocalEngine, RayEngine
from bastion.scan.runner import ScanSettings, run_scan

ROOT = Path(__file__).resolve().parent


def digits_setup(points: int) -> tuple[LoadedModel, Dataset]:
    """The model (trained here, seed 0) and the ``points`` test digits after the 1,200 it was trained on."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    torch.manual_seed(0)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    train_classifier(model, x[:1200], y[:1200], epochs=10, seed=0)
    test = slice(1200, 1200 + points)
    data = Dataset(x=x[test], y=y[test], class_names=[str(i) for i in range(10)], description="digits 1200+")
    return LoadedModel(classifier=model, description="digits_cnn", sha256=None, kind="torch"), data


def summary(record: Any) -> dict[str, Any]:
    """What must agree between engines: accuracies and each attack's counts."""
    return {"results": [{"eps": r.eps, "clean": r.clean_accuracy, "robust": r.robust_accuracy,
                         "attacks": [(a.name, a.points_attacked, a.points_broken, a.queries) for a in r.attacks]}
                        for r in record.results]}


def timed_scan(loaded: LoadedModel, data: Dataset, settings: ScanSettings, engine: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    outcome = run_scan(loaded, data, settings, engine=engine)
    return time.perf_counter() - started, outcome.record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=597, help="test digits scanned (at most 597)")
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "scale.json")
    args = parser.parse_args()
    if not 1 <= args.points <= 597 or min(args.workers) < 1:
        parser.error("--points is 1 to 597 and --workers at least 1")
    try:
        import ray
    except ImportError:
        sys.exit("Ray is not installed: .venv/bin/pip install --constraint constraints.txt 'ray>=2.9'")
    loaded, data = digits_setup(args.points)
    settings = ScanSettings(eps=[args.eps], suite=args.suite, seed=0, batch_size=args.batch_size)
    rows: list[dict[str, Any]] = []
    reference = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds, record = timed_scan(loaded, data, settings, LocalEngine())
        reference = reference or summary(record)
        rows.append({"engine": f"local, {threads} torch thread(s)", "workers": None, "seconds": seconds,
                     "ray_init_seconds": None, "same_record": summary(record) == reference})
        print(f"local, {threads} thread(s): {seconds:.1f} s", flush=True)
    torch.set_num_threads(1)
    for workers in args.workers:
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
        init_seconds = time.perf_counter() - started
        try:
            seconds, record = timed_scan(loaded, data, settings, RayEngine(shards=workers))
        finally:
            ray.shutdown()
        rows.append({"engine": "ray", "workers": workers, "seconds": seconds, "ray_init_seconds": init_seconds,
                     "same_record": summary(record) == reference})
        print(f"ray, {workers} worker(s): {seconds:.1f} s (+{init_seconds:.1f} s to start Ray); "
              f"same record: {rows[-1]['same_record']}", flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_local_1_thread"] = base / row["seconds"]
        row["speedup_vs_local_2_threads"] = rows[1]["seconds"] / row["seconds"]
    result = {"benchmark": "scale", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "ray": ray.__version__, "bastion": __version__},
              "config": {"points": args.points, "suite": args.suite, "eps": args.eps, "batch_size": args.batch_size,
                         "workers": args.workers, "command": " ".join(sys.argv)},
              "reference": reference, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'engine':32} {'seconds':>8} {'x local(1)':>10} {'x local(2)':>10}  same record")
    for row in rows:
        name = row["engine"] if row["workers"] is None else f"ray, {row['workers']} worker(s)"
        print(f"{name:32} {row['seconds']:8.1f} {row['speedup_vs_local_1_thread']:10.2f} "
              f"{row['speedup_vs_local_2_threads']:10.2f}  {row['same_record']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
