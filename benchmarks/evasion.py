"""Evasion benchmark on Fashion-MNIST: bastion against torchattacks, ART, foolbox and AutoAttack.

Run from the repository root (``make bench-install`` first; Fashion-MNIST from
``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/evasion.py --points 1000 --aa-points 500

It trains (once, cached under benchmarks/.cache/) a small CNN and a PGD-adversarially trained one,
then measures side by side, in one process, on the same points and weights:

1. PGD-40 (linf, eps 0.1, step 2.5*eps/40, random start) time per point for every library,
   on the adversarially trained model (few points break early there, so every library does ~40 steps);
   rounds interleave the libraries and the best time of each is kept (this machine drifts by 20%);
2. bastion's ``standard`` suite against AutoAttack standard (torchattacks), robust accuracy and time;
3. on the undefended model, bastion's ``quick`` cascade against torchattacks PGD-40.

Every library gets the same batch size (``--batch-size``, default 128: on 2 CPU cores a forward and
backward pass of this CNN costs 0.36 ms per point in batches of 128 and 0.63 ms in batches of 1024).
Results are printed and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bastion.attacks.evasion.pgd import PGD
from bastion.core.ids import keys_from_ids, sample_ids
from bastion.core.threat import ThreatModel
from bastion.data.sources import load_dataset
from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_cnn
from bastion.scan.cascade import run_cascade
from bastion.scan.suites import build_attacks


def trained_model(cache: Path, name: str, x: np.ndarray, y: np.ndarray, *, epochs: int,
                  adversarial: ThreatModel | None) -> TorchClassifier:
    """Load cached weights or train and cache them."""
    model = TorchClassifier(fashion_cnn(), (1, 28, 28), 10)
    path = cache / f"{name}.safetensors"
    if path.exists():
        model.module.load_state_dict(load_file(str(path)))
        return model
    started = time.perf_counter()
    train_classifier(model, x, y, epochs=epochs, batch_size=128, seed=0, adversarial=adversarial,
                     attack_steps=7, on_epoch=lambda e, n, loss: print(f"  {name} epoch {e}/{n} loss {loss:.3f}"))
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(path))
    return model


def timed(run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    x_adv = run()
    return x_adv, time.perf_counter() - started


def chunked(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """Run ``attack(x, y) -> x_adv`` batch by batch, as every library is given the same batch size."""
    return torch.cat([attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).float().mean())


def pgd40_peers(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: float,
                repeats: int, batch_size: int) -> dict[str, dict]:
    """PGD-40 with identical settings in every library; rounds interleave the libraries, best time kept."""
    import foolbox
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    step = 2.5 * eps / 40
    module = model.module.eval()
    threat = ThreatModel(norm="linf", eps=eps)
    keys = keys_from_ids(sample_ids(x, y))
    art_model = PyTorchClassifier(module, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                  nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescentPyTorch(art_model, norm=np.inf, eps=eps, eps_step=step, max_iter=40,
                                              num_random_init=1, batch_size=batch_size, verbose=False)
    fb_model = foolbox.PyTorchModel(module, bounds=(0.0, 1.0))
    fb_pgd = foolbox.attacks.LinfPGD(abs_stepsize=step, steps=40, random_start=True)
    all_steps = PGD(steps=40, rel_step_size=step / eps, early_stop=False)
    early = PGD(steps=40, rel_step_size=step / eps)
    ta_pgd = torchattacks.PGD(module, eps=eps, alpha=step, steps=40, random_start=True)

    def bastion(attack: PGD) -> torch.Tensor:
        return torch.cat([attack(model, x[i : i + batch_size], y[i : i + batch_size], threat,
                                 keys=keys[i : i + batch_size]).x_adv for i in range(0, len(x), batch_size)])

    runs: dict[str, Callable[[], torch.Tensor]] = {
        "bastion PGD-40 (all 40 steps)": lambda: bastion(all_steps),
        "bastion PGD-40 (early stop)": lambda: bastion(early),
        "torchattacks PGD-40": lambda: chunked(ta_pgd, x, y, batch_size),
        "ART PGD-40": lambda: torch.from_numpy(art_pgd.generate(x.numpy(), y=y.numpy())),
        "foolbox PGD-40": lambda: chunked(lambda a, b: fb_pgd(fb_model, a, b, epsilons=eps)[1], x, y, batch_size),
    }
    results: dict[str, dict] = {}
    for round_ in range(repeats):
        for name, run in runs.items():
            x_adv, seconds = timed(run)
            entry = results.setdefault(name, {"times": []})
            entry["times"].append(round(seconds, 2))
            entry["robust_accuracy"] = accuracy(model, x_adv, y)
            print(f"  round {round_ + 1} {name}: {seconds:.2f} s")
    for entry in results.values():
        entry["seconds"] = min(entry["times"])
        entry["ms_per_point"] = 1000 * entry["seconds"] / len(x)
    return results


def cascade(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: float, suite: str,
            batch_size: int) -> dict:
    keys = keys_from_ids(sample_ids(x, y))
    attacks = build_attacks(suite)
    started = time.perf_counter()
    result = run_cascade(model, x, y, ThreatModel(norm="linf", eps=eps), attacks, keys=keys, seed=0,
                         batch_size=batch_size)
    seconds = time.perf_counter() - started
    per_attack = {a.name: {"broken": a.points_broken, "seconds": round(a.seconds, 1)} for a in result.attacks}
    return {"seconds": seconds, "robust_accuracy": result.robust_accuracy,
            "clean_accuracy": result.clean_accuracy, "attacks": per_attack}


def autoattack(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int) -> dict:
    import torchattacks

    attack = torchattacks.AutoAttack(model.module.eval(), norm="Linf", eps=eps, version="standard",
                                     n_classes=10, seed=0)
    x_adv, seconds = timed(lambda: chunked(attack, x, y, batch_size))
    return {"seconds": seconds, "robust_accuracy": accuracy(model, x_adv, y)}


def torchattacks_pgd40(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: float,
                       batch_size: int) -> dict:
    import torchattacks

    attack = torchattacks.PGD(model.module.eval(), eps=eps, alpha=2.5 * eps / 40, steps=40, random_start=True)
    x_adv, seconds = timed(lambda: chunked(attack, x, y, batch_size))
    return {"seconds": seconds, "robust_accuracy": accuracy(model, x_adv, y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000, help="test points for PGD-40 and the undefended model")
    parser.add_argument("--aa-points", type=int, default=500, help="test points for standard vs AutoAttack")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the PGD-40 timing")
    parser.add_argument("--batch-size", type=int, default=128, help="the same for every library")
    parser.add_argument("--skip-autoattack", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/evasion.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = load_dataset("fashion-mnist:train")
    test = load_dataset("fashion-mnist:test", limit=max(args.points, args.aa_points))
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    print("training / loading models")
    plain = trained_model(args.cache, "fashion_cnn_plain", train.x, train.y, epochs=args.epochs, adversarial=None)
    robust = trained_model(args.cache, "fashion_cnn_pgd_at", train.x, train.y, epochs=args.epochs,
                           adversarial=ThreatModel(norm="linf", eps=args.eps))
    n, m = args.points, args.aa_points
    report: dict = {"batch_size": args.batch_size,
                    "machine": {"cpu_threads": args.threads, "python": platform.python_version(),
                                "torch": torch.__version__},
                    "eps": args.eps, "points": n, "aa_points": m,
                    "clean_accuracy": {"plain": accuracy(plain, x[:n], y[:n]),
                                       "pgd_at": accuracy(robust, x[:n], y[:n])}}
    print("1. PGD-40 on the adversarially trained model")
    report["pgd40"] = pgd40_peers(robust, x[:n], y[:n], args.eps, args.repeats, args.batch_size)
    print("2. standard suite vs AutoAttack on the adversarially trained model")
    report["standard"] = cascade(robust, x[:m], y[:m], args.eps, "standard", args.batch_size)
    print(f"  bastion standard: {report['standard']}")
    if not args.skip_autoattack:
        report["autoattack"] = autoattack(robust, x[:m], y[:m], args.eps, args.batch_size)
        print(f"  AutoAttack standard: {report['autoattack']}")
    print("3. undefended model: quick cascade vs torchattacks PGD-40")
    report["undefended_quick"] = cascade(plain, x[:n], y[:n], args.eps, "quick", args.batch_size)
    report["undefended_torchattacks_pgd40"] = torchattacks_pgd40(plain, x[:n], y[:n], args.eps, args.batch_size)
    print(f"  {report['undefended_quick']}\n  {report['undefended_torchattacks_pgd40']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
