"""Certification benchmark on Fashion-MNIST, randomized smoothing: bastion against ART.

Run from the repository root (``make bench-install`` first; Fashion-MNIST from
``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/certify.py

It trains (once, cached under benchmarks/.cache/) ``bastion.models.zoo:fashion_cnn`` with Gaussian
noise augmentation at sigma 0.25. Then, with the same sigma, n, n0, alpha and batch size for every
library, each job in its own subprocess (so that its peak memory is its own):

1. on the first ``--points`` test images, once each: ART's ``PyTorchRandomizedSmoothing.certify``,
   bastion's CERTIFY (fixed n) and bastion's sequential CERTIFY (same noise draws as its fixed-n
   run): certified accuracy per radius, differing certificates, forward passes per sample, and peak
   memory (peak RSS as ``VmHWM``, and its increase over the RSS after imports, data and model load);
2. timing, ``--rounds`` rounds on the first ``--timing-points`` images, in each round back to back:
   the model's forward passes alone (``points * (n0 + n)`` of them, in batches) in the default
   layout (what ART runs), ART, bastion, and the forward passes alone in channels-last (what
   bastion runs). This machine's load changes from minute to minute, so the throughput ratio is the
   median of the per-round ratios of jobs that ran next to each other.

Results are printed as markdown and written to ``--out`` (JSON) and ``--log``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bastion.core.ids import keys_from_ids, sample_ids
from bastion.data.sources import load_dataset
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_cnn

JOBS = ("forward-default", "forward-channels-last", "art", "bastion", "sequential")
#: The jobs of a timing round, in the order they run (ART and bastion adjacent).
TIMED_JOBS = ("forward-default", "art", "bastion", "forward-channels-last")


# ----------------------------------------------------------------------------------------- model


def weights_path(args: argparse.Namespace) -> Path:
    return args.cache / f"fashion_cnn_noise{args.sigma:g}_e{args.epochs}.safetensors"


def train_or_load(args: argparse.Namespace) -> tuple[TorchClassifier, dict[str, Any]]:
    """The noise-trained model, and its training record (training time, accuracy) from the cache sidecar."""
    from bastion.defenses.training import fit
    from bastion.defenses.training.noise import GaussianAugmentation

    path = weights_path(args)
    sidecar = path.with_suffix(".json")
    model = TorchClassifier(fashion_cnn(), (1, 28, 28), 10)
    if path.exists() and sidecar.exists():
        model.module.load_state_dict(load_file(str(path)))
        return model, json.loads(sidecar.read_text()) | {"from_cache": True}
    train = load_dataset("fashion-mnist:train")
    torch.set_num_threads(args.train_threads)
    started = time.perf_counter()
    record = fit(model, train.x, train.y, GaussianAugmentation(args.sigma), epochs=args.epochs, batch_size=128,
                 optimizer="adam", lr=1e-3, seed=0,
                 on_epoch=lambda e, n, r: log(args, f"  epoch {e}/{n}: loss {r.loss:.3f} ({r.seconds:.0f} s)"))
    info = {"epochs": args.epochs, "sigma": args.sigma, "train_seconds": round(time.perf_counter() - started, 1),
            "train_threads": args.train_threads, "train_samples": len(train),
            "final_loss": record.history[-1].loss, "optimizer": "adam", "lr": 1e-3, "batch_size": 128}
    args.cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(path))
    sidecar.write_text(json.dumps(info, indent=2))
    return model, info | {"from_cache": False}


def test_points(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_dataset("fashion-mnist:test", limit=count)
    return torch.from_numpy(test.x), torch.from_numpy(test.y)


# ---------------------------------------------------------------------------------------- workers


def rss_mb() -> float:
    """Current resident set size (Linux ``/proc/self/statm``), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process image, MiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that over ``fork`` + ``exec``, so a worker
    would report its parent's peak whenever the parent's is higher. (The two agree otherwise.)
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One job in this process; returns its results with time and memory."""
    torch.set_num_threads(args.threads)
    if args.worker == "art":  # what ART imports on first use, so that imports do not count as its peak
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing  # noqa: F401
        from statsmodels.stats.proportion import proportion_confint  # noqa: F401
    else:
        from bastion.certify.sequential import certify_sequential  # noqa: F401
        from bastion.certify.smoothing import GaussianSmoothing  # noqa: F401
    model = TorchClassifier(fashion_cnn(), (1, 28, 28), 10)
    model.module.load_state_dict(load_file(str(weights_path(args))))
    model.module.eval()
    x, y = test_points(args.points)
    keys = keys_from_ids(sample_ids(x, y))
    baseline, peak_before = rss_mb(), peak_rss_mb()
    started = time.perf_counter()
    result = JOB_FUNCTIONS[args.worker](args, model, x, keys)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    return result | {"seconds": seconds, "rss_after_load_mb": baseline, "peak_rss_mb": peak,
                     "peak_increase_mb": peak - baseline, "peak_before_job_mb": peak_before}


def job_forward(args: argparse.Namespace, model: TorchClassifier, x: torch.Tensor, keys: torch.Tensor,
                channels_last: bool) -> dict[str, Any]:
    """``points * (n0 + n)`` forward passes (and argmax) in batches of ``batch_size``, on fixed noisy inputs."""
    module = model.module
    generator = torch.Generator().manual_seed(0)
    batch = x[:1] + args.sigma * torch.randn(args.batch_size, *x.shape[1:], generator=generator)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)
    total = args.points * (args.n0 + args.n)
    done = 0
    with torch.inference_mode():
        while done < total:
            size = min(args.batch_size, total - done)
            module(batch[:size]).argmax(dim=1)
            done += size
    return {"forward_passes": total}


def job_art(args: argparse.Namespace, model: TorchClassifier, x: torch.Tensor, keys: torch.Tensor) -> dict[str, Any]:
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    np.random.seed(args.seed)
    smoothed = PyTorchRandomizedSmoothing(model.module, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                          nb_classes=10, clip_values=None, device_type="cpu",
                                          sample_size=args.n0, scale=args.sigma, alpha=args.alpha)
    prediction, radius = smoothed.certify(x.numpy(), n=args.n, batch_size=args.batch_size)
    return {"prediction": [int(p) for p in prediction], "radius": [float(r) for r in radius],
            "forward_passes": args.points * (args.n0 + args.n)}


def job_bastion(args: argparse.Namespace, model: TorchClassifier, x: torch.Tensor,
                keys: torch.Tensor) -> dict[str, Any]:
    from bastion.certify.smoothing import GaussianSmoothing

    smoothed = GaussianSmoothing(model, args.sigma, batch_size=args.batch_size, seed=args.seed)
    certificates = smoothed.certify(x, n0=args.n0, n=args.n, alpha=args.alpha, keys=keys)
    return {"prediction": [c.prediction for c in certificates], "radius": [c.radius for c in certificates],
            "p_lower": [c.p_lower for c in certificates], "top_count": [c.top_count for c in certificates],
            "forward_passes": sum(c.forward_passes for c in certificates)}


def job_sequential(args: argparse.Namespace, model: TorchClassifier, x: torch.Tensor,
                   keys: torch.Tensor) -> dict[str, Any]:
    from bastion.certify.sequential import certify_sequential
    from bastion.certify.smoothing import GaussianSmoothing

    smoothed = GaussianSmoothing(model, args.sigma, batch_size=args.batch_size, seed=args.seed)
    certificates = certify_sequential(smoothed, x, args.radii, n0=args.n0, n=args.n, alpha=args.alpha, keys=keys)
    return {"prediction": [c.prediction for c in certificates], "radius": [c.radius for c in certificates],
            "passes_per_sample": [c.forward_passes for c in certificates],
            "stopped_early": [c.stopped_early for c in certificates],
            "forward_passes": sum(c.forward_passes for c in certificates)}


JOB_FUNCTIONS = {
    "forward-default": lambda a, m, x, k: job_forward(a, m, x, k, channels_last=False),
    "forward-channels-last": lambda a, m, x, k: job_forward(a, m, x, k, channels_last=True),
    "art": job_art,
    "bastion": job_bastion,
    "sequential": job_sequential,
}


def spawn(args: argparse.Namespace, job: str, points: int, radii: list[float] | None = None) -> dict[str, Any]:
    """Run ``job`` on the first ``points`` images in a fresh interpreter (its own peak RSS); it prints JSON last.

    ``radii``: the radii a sequential job decides (default ``--radii``).
    """
    command = [sys.executable, __file__, "--worker", job, "--points", str(points), "--sigma", str(args.sigma),
               "--n", str(args.n), "--n0", str(args.n0), "--alpha", str(args.alpha),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--seed", str(args.seed),
               "--epochs", str(args.epochs), "--cache", str(args.cache),
               "--radii", ",".join(map(str, radii or args.radii))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(args, f"  {job} on {points} images: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MiB "
              f"(+{result['peak_increase_mb']:.0f} MiB over {result['rss_after_load_mb']:.0f} after load)")
    return result


# ---------------------------------------------------------------------------------------- reports


def log(args: argparse.Namespace, line: str) -> None:
    print(line, flush=True)
    if args.log is not None and args.worker is None:
        with args.log.open("a") as handle:
            handle.write(line + "\n")


def certified_accuracy(prediction: list[int], radius: list[float], y: np.ndarray, r: float) -> float:
    hits = [p == label and rad >= r for p, rad, label in zip(prediction, radius, y, strict=True)]
    return float(np.mean(hits))


def differing(a: dict[str, Any], b: dict[str, Any], y: np.ndarray, radii: list[float]) -> int:
    """Inputs whose certified-correct status differs at some radius, or whose prediction differs."""
    count = 0
    for i, label in enumerate(y):
        status_a = [a["prediction"][i] == label and a["radius"][i] >= r for r in radii]
        status_b = [b["prediction"][i] == label and b["radius"][i] >= r for r in radii]
        count += status_a != status_b or a["prediction"][i] != b["prediction"][i]
    return count


def floor_passes(args: argparse.Namespace, fixed: dict[str, Any], y: np.ndarray) -> float:
    """Mean passes no level-alpha test can go below while certifying what fixed-n certifies at the largest radius.

    An input with every vote for its class certifies ``r`` after ``t`` draws only if
    ``Phi(r / sigma) ** t <= alpha``; other inputs are counted at ``n0`` (no estimation draw at all).
    """
    from scipy.stats import norm

    theta = norm.cdf(max(args.radii) / args.sigma)
    need = math.ceil(math.log(args.alpha) / math.log(theta)) if theta < 1 else 0
    top = sum(1 for p, r, label in zip(fixed["prediction"], fixed["radius"], y, strict=True)
              if p == label and r >= max(args.radii))
    return args.n0 + need * top / len(y)


def timing_rounds(args: argparse.Namespace, rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per round (jobs back to back, so under the same machine load): time ratios; their medians."""
    log(args, f"\nTiming, {args.timing_points} images per job ({args.timing_points * (args.n0 + args.n)} forward "
              f"passes), jobs back to back in each round:\n")
    log(args, "| round | forward passes only, default layout | ART certify | bastion CERTIFY | forward passes only, "
              "channels-last | ART / bastion time | ART / its forward passes | bastion / its forward passes |")
    log(args, "|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"art_over_bastion": [], "art_over_forward": [], "bastion_over_forward": []}
    for number, jobs in enumerate(rounds, start=1):
        seconds = {job: jobs[job]["seconds"] for job in TIMED_JOBS}
        ratios["art_over_bastion"].append(seconds["art"] / seconds["bastion"])
        ratios["art_over_forward"].append(seconds["art"] / seconds["forward-default"])
        ratios["bastion_over_forward"].append(seconds["bastion"] / seconds["forward-channels-last"])
        log(args, f"| {number} | " + " | ".join(f"{seconds[job]:.1f} s" for job in TIMED_JOBS) + " | "
                  + " | ".join(f"{values[-1]:.2f}x" for values in ratios.values()) + " |")
    medians = {name: float(np.median(values)) for name, values in ratios.items()}
    log(args, "| median | | | | | " + " | ".join(f"**{v:.2f}x**" for v in medians.values()) + " |")
    return {"rounds": rounds, "ratios": ratios, "medians": medians}


def report(args: argparse.Namespace, training: dict[str, Any], runs: dict[str, dict[str, Any]],
           rounds: list[dict[str, dict[str, Any]]], y: np.ndarray) -> dict[str, Any]:
    radii = args.radii
    art, bas, seq = runs["art"], runs["bastion"], runs["sequential"]
    log(args, f"\n## Randomized smoothing: {args.points} Fashion-MNIST test images, sigma {args.sigma}, "
              f"n {args.n}, n0 {args.n0}, alpha {args.alpha}, batch {args.batch_size}, {args.threads} threads\n")
    log(args, "| certified accuracy at radius | " + " | ".join(f"{r:g}" for r in radii) + " |")
    log(args, "|---|" + "---|" * len(radii))
    for name, run in (("ART certify", art), ("bastion CERTIFY", bas), ("bastion sequential", seq)):
        accuracies = [certified_accuracy(run["prediction"], run["radius"], y, r) for r in radii]
        log(args, f"| {name} | " + " | ".join(f"{100 * a:.0f}%" for a in accuracies) + " |")
    art_vs_bastion = differing(art, bas, y, radii)
    seq_vs_fixed = differing(seq, bas, y, radii)
    log(args, f"\nCertificates differing (prediction, or certified-correct at some radius): ART vs bastion "
              f"{art_vs_bastion} of {len(y)} (independent noise); sequential vs fixed-n {seq_vs_fixed} of {len(y)} "
              f"(same noise draws).\n")
    forward = {job: rounds[0][job] for job in ("forward-default", "forward-channels-last")}
    log(args, "| job | images | wall time | forward passes / s | peak RSS (VmHWM) | peak increase over RSS "
              "after load |")
    log(args, "|---|---|---|---|---|---|")
    rows = (("forward passes only, default layout", forward["forward-default"], args.timing_points),
            ("forward passes only, channels-last", forward["forward-channels-last"], args.timing_points),
            ("ART certify", art, args.points), ("bastion CERTIFY", bas, args.points),
            ("bastion sequential", seq, args.points))
    for name, run, points in rows:
        log(args, f"| {name} | {points} | {run['seconds']:.1f} s | {run['forward_passes'] / run['seconds']:.0f} | "
                  f"{run['peak_rss_mb']:.0f} MiB | {run['peak_increase_mb']:.1f} MiB |")
    timing = timing_rounds(args, rounds)
    memory_ratio = bas["peak_increase_mb"] / art["peak_increase_mb"]
    mean_fixed = bas["forward_passes"] / args.points
    mean_seq = seq["forward_passes"] / args.points
    floor = floor_passes(args, bas, y)
    log(args, f"\nThroughput, bastion over ART: **{timing['medians']['art_over_bastion']:.2f}x** (median of the "
              f"rounds; target >= 1.5x); {art['seconds'] / bas['seconds']:.2f}x in the {args.points}-image runs, "
              f"which ran minutes apart.")
    log(args, f"Peak memory, judged on the increase over the RSS after imports, data and model load: bastion's is "
              f"**{memory_ratio:.2f}** of ART's (target <= 0.25); absolute peaks {bas['peak_rss_mb']:.0f} vs "
              f"{art['peak_rss_mb']:.0f} MiB. The forward passes alone add "
              f"{forward['forward-default']['peak_increase_mb']:.0f} MiB (default layout) and "
              f"{forward['forward-channels-last']['peak_increase_mb']:.0f} MiB (channels-last).")
    log(args, f"Sequential: {mean_seq:.0f} forward passes per sample against {mean_fixed:.0f} for fixed n: "
              f"**{mean_fixed / mean_seq:.2f}x fewer** (target >= 3x), {sum(seq['stopped_early'])} of {len(y)} "
              f"stopped before the cap, {seq['seconds']:.1f} s. Floor for any level-alpha test that certifies "
              f"the same inputs at r = {max(radii):g}: {floor:.0f} passes per sample ({mean_fixed / floor:.2f}x).")
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "training": training,
        "certified_accuracy": {name: {f"{r:g}": certified_accuracy(run["prediction"], run["radius"], y, r)
                                      for r in radii}
                               for name, run in (("art", art), ("bastion", bas), ("sequential", seq))},
        "differing": {"art_vs_bastion": art_vs_bastion, "sequential_vs_fixed": seq_vs_fixed},
        "throughput_ratio_median": timing["medians"]["art_over_bastion"],
        "throughput_ratio_full_runs": art["seconds"] / bas["seconds"],
        "memory_increase_ratio": memory_ratio,
        "sequential": {"mean_passes": mean_seq, "fixed_passes": mean_fixed, "ratio": mean_fixed / mean_seq,
                       "floor_passes": floor},
        "timing": timing,
        "labels": y.tolist(),
        "runs": runs,
    }


def sequential_study(args: argparse.Namespace, y: np.ndarray) -> dict[str, Any]:
    """Fixed-n CERTIFY once, then sequential CERTIFY once per radius set of ``--study-radii``, same noise draws.

    The saving depends on the largest radius asked: an input whose top class wins every vote stops
    after about ``ln(1 / alpha) / -ln(Phi(r_max / sigma))`` draws, which approaches ``n`` as ``r_max``
    approaches the largest radius ``n`` draws can certify at all.
    """
    from scipy.stats import norm

    fixed = spawn(args, "bastion", args.points)
    best = float(args.sigma * norm.ppf(args.alpha ** (1 / args.n)))
    log(args, f"\n## Sequential CERTIFY against fixed n, by the largest radius asked: {args.points} images, "
              f"sigma {args.sigma}, n {args.n}, n0 {args.n0}, alpha {args.alpha} (largest radius n draws can "
              f"certify: {best:.3f})\n")
    log(args, "| radii decided | certified accuracy, fixed n | certified accuracy, sequential | certificates differing "
              "| passes per image, fixed n | passes per image, sequential | fewer passes | stopped before the cap "
              "| floor (any level-alpha test) |")
    log(args, "|---|---|---|---|---|---|---|---|---|")
    rows = []
    mean_fixed = fixed["forward_passes"] / args.points
    for radii in args.study_radii:
        seq = spawn(args, "sequential", args.points, radii=radii)
        study = argparse.Namespace(**(vars(args) | {"radii": radii}))
        floor = floor_passes(study, fixed, y)
        mean_seq = seq["forward_passes"] / args.points
        acc_fixed = [certified_accuracy(fixed["prediction"], fixed["radius"], y, r) for r in radii]
        acc_seq = [certified_accuracy(seq["prediction"], seq["radius"], y, r) for r in radii]
        count = differing(seq, fixed, y, radii)
        log(args, f"| {', '.join(f'{r:g}' for r in radii)} | {' / '.join(f'{100 * a:.0f}%' for a in acc_fixed)} | "
                  f"{' / '.join(f'{100 * a:.0f}%' for a in acc_seq)} | {count} of {len(y)} | {mean_fixed:.0f} | "
                  f"{mean_seq:.0f} | **{mean_fixed / mean_seq:.2f}x** | {sum(seq['stopped_early'])} of {len(y)} | "
                  f"{floor:.0f} ({mean_fixed / floor:.2f}x) |")
        rows.append({"radii": radii, "certified_accuracy_fixed": acc_fixed, "certified_accuracy_sequential": acc_seq,
                     "differing": count, "mean_passes_fixed": mean_fixed, "mean_passes_sequential": mean_seq,
                     "ratio": mean_fixed / mean_seq, "floor_passes": floor, "run": seq})
    return {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "largest_certifiable_radius": best, "fixed": fixed, "labels": y.tolist(), "rows": rows}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--radii", type=lambda s: [float(r) for r in s.split(",")], default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--batch-size", type=int, default=128, help="the same for every library")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-threads", type=int, default=None, help="threads for training (default: --threads)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (each job back to back)")
    parser.add_argument("--timing-points", type=int, default=10, help="images per job in the timing rounds")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--study-radii", default=None,
                        type=lambda s: [[float(r) for r in part.split(",")] for part in s.split(";")],
                        help="only the sequential study: radius sets separated by ';', "
                             "e.g. '0,0.25,0.5,0.75;0,0.25,0.5'")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/certify_smoothing.json"))
    parser.add_argument("--log", type=Path, default=Path("benchmarks/results/certify_smoothing.log"))
    parser.add_argument("--worker", choices=JOBS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.train_threads = args.train_threads or args.threads
    return args


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        print(json.dumps(run_worker(args)))
        return
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text("")
    log(args, f"# benchmarks/certify.py {' '.join(sys.argv[1:])}")
    model, training = train_or_load(args)
    x_eval, y_eval = test_points(1000)
    training["clean_test_accuracy_first_1000"] = float((model.predict(x_eval) == y_eval).float().mean())
    log(args, f"model: fashion_cnn, noise-trained at sigma {args.sigma}: {training}")
    if args.train_only:
        return
    if args.study_radii:
        _, y = test_points(args.points)
        results = sequential_study(args, y.numpy())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        log(args, f"\nwritten {args.out} and {args.log}")
        return
    log(args, f"1. accuracy and memory: each library once on {args.points} images")
    runs = {job: spawn(args, job, args.points) for job in ("art", "bastion", "sequential")}
    log(args, f"2. timing: {args.rounds} rounds on {args.timing_points} images, jobs back to back")
    rounds = [{job: spawn(args, job, args.timing_points) for job in TIMED_JOBS} for _ in range(args.rounds)]
    _, y = test_points(args.points)
    results = report(args, training, runs, rounds, y.numpy())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    log(args, f"\nwritten {args.out} and {args.log}")


if __name__ == "__main__":
    main()
