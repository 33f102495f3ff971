"""Gateway extraction-monitor benchmark (issue 6): queries to the first alert, false alerts, cost per request.

Run from the repository root (Fashion-MNIST from ``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/gateway_monitor.py                      # a few minutes on 2 cores
    .venv/bin/python benchmarks/gateway_monitor.py --detector confidence --shapiro-threshold 0.9
    .venv/bin/python benchmarks/gateway_monitor.py --quick              # smoke run, figures mean nothing

Results go to ``benchmarks/results/<--out>.json`` (default ``gateway_monitor``) and a short table
is printed. Targets (issue 6): the monitor flags a Jacobian-augmentation extraction within 500
queries and a Knockoff extraction with out-of-distribution natural images (digits against a
Fashion-MNIST model) within 2,000, and raises no alert over 10,000 ordinary test-set queries spread
across 10 keys.

Setup:

1. Victim: ``bastion.models.zoo:fashion_small_cnn`` trained by ``train_classifier`` (Adam at 1e-3,
   batches of 64, ``--victim-epochs`` epochs, default 3) on Fashion-MNIST training images
   0..49,999; weights cached under ``benchmarks/out/gateway/``.
2. OOD flags: the ``--detector`` input detector (default ``energy``) fitted on training images
   50,000..59,999 (never trained on) at false-positive rate ``--fpr`` (default 0.05), which is also
   the monitor's ``ood_rate_expected``.
3. Every query batch an attack or a client sends goes through :class:`MonitoredVictim`: the
   victim's logits, the detector's flags (from those logits), then ``ExtractionMonitor.observe``
   under the client's key, as the gateway does. The query count at each signal's first alert is
   recorded; only ``observe`` is timed for the monitor's cost.
4. Jacobian: ``JacobianAugmentation`` (Papernot et al.: 100 seed images from the test set, step 0.1,
   label answers), budget ``--jacobian-budget`` (default 800), one key.
5. Knockoff: ``KnockoffNets`` (random strategy) with scikit-learn's 1,797 digits, bilinearly
   upscaled to 28x28, as the pool; budget ``min(--knockoff-budget, 1797)``, one key.
   Both attacks train small copies (``--copy-epochs``, default 5) only because the attack needs them
   to run; their fidelity is not this benchmark's concern.
6. Ordinary traffic: the 10,000 test images, shuffled, dealt round-robin to 10 keys and sent one
   request at a time (``--request-size`` images, default 1), keys interleaved.
7. Heavy key: the same 10,000 test images from one key, one at a time: whether a long ordinary
   history stays quiet, and the cost per ``observe`` at thousands of queries.

The cost of ``observe`` is reported as this thread's CPU time (what the monitor costs the gateway,
without time spent waiting for a core on a busy machine) and as wall-clock time. ``--threads``
(default 1) sets torch's threads: requests of one image gain nothing from more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits

from bastion.attacks.extraction import CopyTraining, JacobianAugmentation, KnockoffNets
from bastion.data.sources import load_dataset
from bastion.defenses.detectors import InputDetector, build_detector
from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_small_cnn
from bastion.monitor import ExtractionAlert, ExtractionMonitor

ROOT = Path(__file__).resolve().parent
RESULTS, CACHE = ROOT / "results", ROOT / "out" / "gateway"
SHAPE, CLASSES, TRAIN_SPLIT = (1, 28, 28), 10, 50_000
QUICK = {"victim_epochs": 1, "jacobian_budget": 300, "knockoff_budget": 300, "ordinary": 1000, "heavy": 1000,
         "copy_epochs": 1}


class MonitoredVictim:
    """The victim behind the gateway's guard: every batch is answered, scored, flagged and observed under ``key``.

    A :class:`~bastion.models.base.Classifier` (scores access), so bastion's extraction attacks can query it.
    """

    def __init__(self, victim: TorchClassifier, detector: InputDetector, monitor: ExtractionMonitor,
                 key: str) -> None:
        self.victim, self.detector, self.monitor, self.key = victim, detector, monitor, key
        self.num_classes, self.input_shape, self.bounds = victim.num_classes, victim.input_shape, victim.bounds
        self.access, self.kind = "scores", "monitored"
        self.queries = 0
        self.first: dict[str, int] = {}
        self.observe_seconds: list[float] = []  # wall clock
        self.observe_cpu_seconds: list[float] = []  # this thread's CPU time: what the monitor costs, less waiting
        self.ood_flags = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.victim.logits(x)
        flags = self.detector.flags(self.detector.score(self.victim, x, logits=logits))
        started, cpu = time.perf_counter(), time.thread_time()
        alerts = self.monitor.observe(self.key, x, logits.argmax(dim=1), ood=flags)
        self.observe_seconds.append(time.perf_counter() - started)
        self.observe_cpu_seconds.append(time.thread_time() - cpu)
        self.queries += len(x)
        self.ood_flags += int(flags.sum())
        self._record(alerts)
        return logits

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)

    def _record(self, alerts: list[ExtractionAlert]) -> None:
        for alert in alerts:
            self.first.setdefault(alert.signal, alert.queries)


# ------------------------------------------------------------------------------------------------ setup


def load_victim(args: argparse.Namespace, train_x: np.ndarray, train_y: np.ndarray) -> tuple[TorchClassifier, str]:
    """The Fashion-MNIST victim, trained once and cached by epochs and seed."""
    path = CACHE / f"victim-small-cnn-e{args.victim_epochs}-s{args.seed}.safetensors"
    victim = TorchClassifier(fashion_small_cnn(), SHAPE, CLASSES)
    if path.is_file():
        victim.module.load_state_dict(load_file(str(path)))
        return victim, f"cached {path.relative_to(ROOT.parent)}"
    torch.manual_seed(args.seed)
    victim = TorchClassifier(fashion_small_cnn(), SHAPE, CLASSES)
    started = time.perf_counter()
    train_classifier(victim, train_x[:TRAIN_SPLIT], train_y[:TRAIN_SPLIT], epochs=args.victim_epochs, seed=args.seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    save_file(victim.state_tensors(), str(path))
    return victim, f"trained in {time.perf_counter() - started:.0f} s, saved to {path.relative_to(ROOT.parent)}"


def digits_pool() -> np.ndarray:
    """scikit-learn's 1,797 digits as ``(N, 1, 28, 28)`` float32 in [0, 1] (bilinear upscaling)."""
    digits = torch.from_numpy((load_digits().data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8))
    return F.interpolate(digits, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def new_monitor(args: argparse.Namespace) -> ExtractionMonitor:
    return ExtractionMonitor(shapiro_threshold=args.shapiro_threshold, min_queries=args.min_queries,
                             check_every=args.check_every, max_history=args.max_history,
                             ood_rate_expected=args.fpr, ood_alpha=args.ood_alpha)


# ------------------------------------------------------------------------------------------------ scenarios


def run_attack(name: str, attack: Any, data: np.ndarray, budget: int, guard: MonitoredVictim,
               x_eval: np.ndarray, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    # The auditor labels x_eval with the raw victim: those queries are not the attacker's.
    result = attack.extract(guard, data, budget=budget, x_eval=x_eval, reference=guard.victim, checkpoints=[budget],
                            seed=seed)
    signals = guard.monitor.signals(guard.key)
    return {"attack": name, "queries": guard.queries, "first_alert": min(guard.first.values(), default=None),
            "first_alert_by_signal": guard.first, "ood_flagged": guard.ood_flags,
            "final_shapiro_w": signals.shapiro_w, "copy_fidelity": result.fidelity,
            "seconds": time.perf_counter() - started}


def run_ordinary(args: argparse.Namespace, victim: TorchClassifier, detector: InputDetector, x: np.ndarray,
                 keys: int) -> dict[str, Any]:
    """``x`` shuffled and dealt round-robin to ``keys`` keys, sent ``--request-size`` images per request."""
    monitor = new_monitor(args)
    order = np.random.default_rng(args.seed).permutation(len(x))
    guards = [MonitoredVictim(victim, detector, monitor, f"client-{k}") for k in range(keys)]
    lowest_w = {guard.key: 1.0 for guard in guards}
    size = args.request_size
    requests = [order[start : start + size] for start in range(0, len(order), size)]
    started = time.perf_counter()
    for number, request in enumerate(requests):
        guard = guards[number % keys]
        guard.logits(torch.from_numpy(x[request]))
        w = monitor.signals(guard.key).shapiro_w
        if w is not None:
            lowest_w[guard.key] = min(lowest_w[guard.key], w)
    alerts = [alert.model_dump() for guard in guards for alert in monitor.signals(guard.key).alerts]
    def milliseconds(name: str, *, late: bool = False) -> np.ndarray:
        runs = [np.asarray(getattr(guard, name)) for guard in guards]
        return np.concatenate([run[len(run) // 2:] if late else run for run in runs]) * 1e3

    return {"keys": keys, "queries": int(len(x)), "request_size": size, "alerts": alerts,
            "ood_rate": sum(guard.ood_flags for guard in guards) / len(x),
            "lowest_shapiro_w": min(lowest_w.values()), "lowest_shapiro_w_by_key": lowest_w,
            "observe_ms": cost_summary(milliseconds("observe_seconds")),
            "observe_cpu_ms": cost_summary(milliseconds("observe_cpu_seconds")),
            "observe_cpu_ms_second_half": cost_summary(milliseconds("observe_cpu_seconds", late=True)),
            "seconds": time.perf_counter() - started}


def cost_summary(milliseconds: np.ndarray) -> dict[str, float]:
    return {"mean": float(milliseconds.mean()), "p50": float(np.percentile(milliseconds, 50)),
            "p99": float(np.percentile(milliseconds, 99)), "max": float(milliseconds.max())}


# ------------------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> dict[str, Any]:
    train, test = load_dataset("fashion-mnist:train"), load_dataset("fashion-mnist:test")
    victim, how = load_victim(args, train.x, train.y.astype(np.int64))
    accuracy = float((victim.predict(torch.from_numpy(test.x)).numpy() == test.y).mean())
    print(f"victim fashion_small_cnn ({how}); test accuracy {accuracy:.2%}")
    detector = build_detector(args.detector).fit(victim, torch.from_numpy(train.x[TRAIN_SPLIT:]),
                                                 false_positive_rate=args.fpr)
    x_eval = test.x[-500:]
    training = CopyTraining(epochs=args.copy_epochs, min_steps=0)
    jacobian = run_attack(
        "jacobian", JacobianAugmentation(fashion_small_cnn, output="labels", training=training), test.x[:1000],
        args.jacobian_budget, MonitoredVictim(victim, detector, new_monitor(args), "jacobian"), x_eval, args.seed)
    pool = digits_pool()
    knockoff = run_attack(
        "knockoff", KnockoffNets(fashion_small_cnn, output="labels", training=training), pool,
        min(args.knockoff_budget, len(pool)), MonitoredVictim(victim, detector, new_monitor(args), "knockoff"),
        x_eval, args.seed)
    ordinary = run_ordinary(args, victim, detector, test.x[: args.ordinary], keys=10)
    heavy = run_ordinary(args, victim, detector, test.x[: args.heavy], keys=1)
    return {"config": vars(args), "machine": machine(), "victim": {"accuracy": accuracy, "source": how},
            "detector": {"kind": args.detector, "params": detector.get_params(), "threshold": detector.threshold_},
            "monitor": new_monitor(args).get_params(), "jacobian": jacobian, "knockoff": knockoff,
            "ordinary": ordinary, "heavy_key": heavy, "targets": targets(jacobian, knockoff, ordinary)}


def targets(jacobian: dict[str, Any], knockoff: dict[str, Any], ordinary: dict[str, Any]) -> dict[str, bool]:
    def within(row: dict[str, Any], limit: int) -> bool:
        return row["first_alert"] is not None and row["first_alert"] <= limit

    return {"jacobian_within_500": within(jacobian, 500), "knockoff_within_2000": within(knockoff, 2000),
            "no_alert_on_ordinary_traffic": not ordinary["alerts"]}


def report(results: dict[str, Any]) -> None:
    rows = [("Jacobian augmentation", results["jacobian"]), ("Knockoff (digits pool)", results["knockoff"])]
    print(f"\n{'scenario':<26}{'queries':>9}{'first alert':>13}  by signal")
    for name, row in rows:
        signals = ", ".join(f"{signal} at {count}" for signal, count in sorted(row["first_alert_by_signal"].items(),
                                                                                key=lambda item: item[1]))
        print(f"{name:<26}{row['queries']:>9}{str(row['first_alert']):>13}  {signals or 'none'} "
              f"({row['seconds']:.0f} s)")
    for name, key in (("ordinary, 10 keys", "ordinary"), ("ordinary, 1 heavy key", "heavy_key")):
        row = results[key]
        cpu, wall = row["observe_cpu_ms"], row["observe_ms"]
        print(f"{name:<26}{row['queries']:>9}{len(row['alerts']):>13}  alerts; lowest W {row['lowest_shapiro_w']:.3f}, "
              f"OOD rate {row['ood_rate']:.3f}; observe CPU {cpu['mean']:.3f} ms mean / {cpu['p99']:.3f} p99, "
              f"wall {wall['mean']:.3f} / {wall['p99']:.3f} ({row['seconds']:.0f} s)")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in results["targets"].items()))


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "load_average_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="energy", choices=["energy", "confidence", "mahalanobis"])
    parser.add_argument("--fpr", type=float, default=0.05, help="the detector's false-positive rate")
    parser.add_argument("--shapiro-threshold", type=float, default=0.9)
    parser.add_argument("--min-queries", type=int, default=150)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--max-history", type=int, default=1000)
    parser.add_argument("--ood-alpha", type=float, default=1e-6)
    parser.add_argument("--victim-epochs", type=int, default=3)
    parser.add_argument("--jacobian-budget", type=int, default=800)
    parser.add_argument("--knockoff-budget", type=int, default=2000)
    parser.add_argument("--copy-epochs", type=int, default=5)
    parser.add_argument("--ordinary", type=int, default=10_000, help="test images of ordinary traffic")
    parser.add_argument("--heavy", type=int, default=10_000, help="test images sent by the one heavy key")
    parser.add_argument("--request-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (requests are single images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke configuration (figures mean nothing)")
    parser.add_argument("--out", default="gateway_monitor", help="results name under benchmarks/results/")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = run(args)
    results["wall_seconds"] = time.perf_counter() - started
    report(results)
    print(f"wall time {results['wall_seconds']:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
