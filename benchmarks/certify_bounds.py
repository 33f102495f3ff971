"""IBP / CROWN / CROWN-IBP bounds: bastion against auto_LiRPA, same models, points, batch and threads.

Run from the repository root (Fashion-MNIST from ``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/certify_bounds.py --points 8 --eps 0.1 --threads 1 --repeats 2

auto_LiRPA (optional) installs without touching torch::

    .venv/bin/pip install --constraint constraints.txt --no-deps auto_LiRPA appdirs pyyaml

Its last release (0.3, 2022) pins torch<1.13 and numpy<2 APIs; this script patches three removed
names at import time (``numpy.lib.arraysetops``, ``torch.onnx.symbolic_helper._set_opset_version``,
``torch._C.Node.__getitem__``) so its graph parser runs on torch 2.x. If it still cannot be
imported the script says why and times bastion alone.

On two models (``bastion.models.zoo:fashion_cnn`` and a 784-256-256-10 MLP, each trained briefly and
cached under ``benchmarks/.cache/``) and the first ``--points`` test images, at linf ``--eps``:

1. agreement: lower bounds on the margins ``z_y - z_j`` from bastion and auto_LiRPA must match within
   1e-4 for IBP, CROWN-IBP and CROWN (bastion's plain CROWN, ``intersect=False``, against
   auto_LiRPA's CROWN with its sparse intermediate bounds off: the same algorithm);
2. time per batch (all points in one batch), each library's default configuration: bastion's
   ``margin_bounds`` (chain reading and checks included) against auto_LiRPA's ``compute_bounds``
   (its one-time ``BoundedModule`` graph conversion excluded); rounds interleave the libraries and
   the best wall time is kept (a shared machine drifts), CPU time of this process is recorded too.

Results are printed as a markdown table and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bastion.certify.bounds import margin_bounds, margin_spec
from bastion.certify.crown import crown_lower
from bastion.certify.ibp import InputRegion, interval_bounds, spec_lower
from bastion.certify.network import build_chain
from bastion.data.sources import load_dataset
from bastion.defenses.training import CrossEntropy, fit
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_cnn

METHODS = {"IBP": "ibp", "CROWN-IBP": "crown-ibp", "CROWN": "crown"}
TOLERANCE = 1e-4


def load_auto_lirpa() -> tuple[types.ModuleType | None, str]:
    """auto_LiRPA with the compatibility patches, or ``None`` and the reason it cannot be used."""
    try:
        import numpy.lib

        if "numpy.lib.arraysetops" not in sys.modules and not hasattr(numpy.lib, "arraysetops"):
            shim = types.ModuleType("numpy.lib.arraysetops")
            shim.isin = np.isin  # type: ignore[attr-defined]
            sys.modules["numpy.lib.arraysetops"] = shim
        import torch.onnx.symbolic_helper as symbolic_helper

        if not hasattr(symbolic_helper, "_set_opset_version"):
            from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

            symbolic_helper._set_opset_version = lambda v: setattr(GLOBALS, "export_onnx_opset_version", v)
        if not hasattr(torch._C.Node, "__getitem__"):
            torch._C.Node.__getitem__ = lambda node, key: getattr(node, node.kindOf(key))(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import auto_LiRPA
    except Exception as exc:  # any failure means: time bastion alone, and say why
        return None, f"auto_LiRPA cannot be used here: {type(exc).__name__}: {exc}"
    from importlib.metadata import version

    return auto_LiRPA, f"auto_LiRPA {version('auto_LiRPA')} (with 3 compatibility patches for torch 2 / numpy 2)"


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def trained(name: str, factory: Callable[[], nn.Module], cache: Path, x: np.ndarray, y: np.ndarray,
            epochs: int) -> TorchClassifier:
    """A briefly trained model (cached): bounds of a trained net behave as in practice, not as at init."""
    torch.manual_seed(0)
    model = TorchClassifier(factory(), (1, 28, 28), 10)
    path = cache / f"certify_bounds_{name}.safetensors"
    if path.exists():
        model.module.load_state_dict(load_file(str(path)))
        return model
    started = time.perf_counter()
    fit(model, x, y, CrossEntropy(), epochs=epochs, batch_size=128, optimizer="adam", seed=0)
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(path))
    return model


def agreement(lirpa: types.ModuleType, model: TorchClassifier, x: torch.Tensor, y: torch.Tensor,
              eps: float) -> dict[str, float]:
    """Largest absolute difference between the two libraries' margin lower bounds, per method."""
    spec = margin_spec(y, 10)
    chain = build_chain(model)
    region = InputRegion.around(x, "linf", eps, model.bounds)
    ours = {
        "IBP": spec_lower(chain, interval_bounds(chain, region), spec),
        "CROWN-IBP": crown_lower(chain, region, spec, intermediate="ibp", intersect=False),
        "CROWN": crown_lower(chain, region, spec, intermediate="crown", intersect=False),
    }
    bounded = lirpa.BoundedModule(model.module, torch.empty_like(x), device="cpu",
                                  bound_opts={"sparse_intermediate_bounds": False,
                                              "sparse_conv_intermediate_bounds": False})
    theirs = {name: _lirpa_bounds(lirpa, bounded, x, spec, eps, name) for name in METHODS}
    return {name: float((ours[name] - theirs[name]).abs().max()) for name in METHODS}


def _lirpa_bounds(lirpa: types.ModuleType, bounded: nn.Module, x: torch.Tensor, spec: torch.Tensor, eps: float,
                  method: str) -> torch.Tensor:
    perturbation = lirpa.PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=(x - eps).clamp(0, 1),
                                            x_U=(x + eps).clamp(0, 1))
    lower, _ = bounded.compute_bounds(x=(lirpa.BoundedTensor(x, perturbation),), C=spec, method=method)
    return lower


def timings(lirpa: types.ModuleType | None, model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: float,
            repeats: int) -> dict[str, dict]:
    """Best wall time per method and library over interleaved rounds, with the mean margin bound."""
    spec = margin_spec(y, 10)
    runs: dict[str, Callable[[], torch.Tensor]] = {
        f"bastion {name}": (lambda m=method: margin_bounds(model, x, y, eps=eps, method=m, batch_size=len(x)))
        for name, method in METHODS.items()
    }
    if lirpa is not None:
        bounded = lirpa.BoundedModule(model.module, torch.empty_like(x), device="cpu")
        runs |= {f"auto_LiRPA {name}": (lambda n=name: _lirpa_bounds(lirpa, bounded, x, spec, eps, n))
                 for name in METHODS}
    results: dict[str, dict] = {}
    for round_ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                lower = run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            entry = results.setdefault(name, {"wall": [], "cpu": []})
            entry["wall"].append(round(wall, 3))
            entry["cpu"].append(round(cpu, 3))
            own = torch.nn.functional.one_hot(y, 10).bool()
            entry["mean_margin_bound"] = float(lower[~own].mean())
            entry["certified"] = int((torch.where(own, torch.inf, lower).amin(dim=1) > 0).sum())
            print(f"  round {round_ + 1} {name}: {wall:.3f} s")
    for entry in results.values():
        entry["seconds"] = min(entry["wall"])
    return results


def markdown(report: dict) -> str:
    lines = ["| model | method | bastion s/batch | auto_LiRPA s/batch | max abs diff (plain) | mean margin bound "
             "bastion / auto_LiRPA |", "|---|---|---|---|---|---|"]
    for model_name, result in report["models"].items():
        for name in METHODS:
            ours = result["timing"][f"bastion {name}"]
            theirs = result["timing"].get(f"auto_LiRPA {name}")
            diff = result.get("agreement", {}).get(name)
            lines.append(
                f"| {model_name} | {name} | {ours['seconds']:.3f} | "
                f"{'n/a' if theirs is None else format(theirs['seconds'], '.3f')} | "
                f"{'n/a' if diff is None else format(diff, '.1e')} | {ours['mean_margin_bound']:.3f} / "
                f"{'n/a' if theirs is None else format(theirs['mean_margin_bound'], '.3f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="test images, bounded as one batch")
    parser.add_argument("--eps", type=float, default=0.1, help="linf radius")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both libraries")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds (best kept)")
    parser.add_argument("--train", type=int, default=6000, help="training images for the brief training")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/certify_bounds.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lirpa, lirpa_note = load_auto_lirpa()
    print(lirpa_note)
    train = load_dataset("fashion-mnist:train", limit=args.train)
    test = load_dataset("fashion-mnist:test", limit=args.points)
    x = torch.from_numpy(test.x).float()
    y = torch.from_numpy(test.y).long()
    models = {"fashion_cnn": (fashion_cnn, 1), "mlp-784-256-256-10": (mlp, 2)}
    report: dict = {"machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": args.threads, "points": len(x), "eps": args.eps, "norm": "linf",
                    "auto_lirpa": lirpa_note, "tolerance": TOLERANCE, "models": {}}
    for name, (factory, epochs) in models.items():
        print(f"{name}:")
        model = trained(name, factory, args.cache, train.x, train.y, epochs)
        result: dict = {"clean_accuracy": float((model.predict(x) == y).float().mean())}
        if lirpa is not None:
            with torch.no_grad():
                result["agreement"] = agreement(lirpa, model, x, y, args.eps)
            result["agree_within_tolerance"] = all(v <= TOLERANCE for v in result["agreement"].values())
            print(f"  max |bastion - auto_LiRPA|: {result['agreement']}")
        result["timing"] = timings(lirpa, model, x, y, args.eps, args.repeats)
        report["models"][name] = result
    table = markdown(report)
    print()
    print(table)
    report["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
