"""Which target ranks does APGD-T need? Evidence for the ``standard`` suite's 3 target classes.

Run from the repository root after ``benchmarks/evasion.py`` has trained and cached its models::

    .venv/bin/python benchmarks/apgd_targets.py --points 500

On the points still robust after APGD-CE, it runs APGD-T exactly as the cascade does (untargeted
evaluation: targeted DLR loss towards each of the k most likely wrong classes in turn, success =
misclassified) for k = 1, 3 and 9 (AutoAttack's choice), and prints the points each broke and its time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from bastion.attacks.evasion.apgd import APGD, APGDTargeted
from bastion.core.ids import sample_keys
from bastion.core.threat import ThreatModel
from bastion.data.sources import load_dataset
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import fashion_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--weights", type=Path, default=Path("benchmarks/.cache/fashion_cnn_pgd_at.safetensors"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = fashion_cnn()
    net.load_state_dict(load_file(str(args.weights)))
    model = TorchClassifier(net, (1, 28, 28), 10)
    data = load_dataset("fashion-mnist:test", limit=args.points)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    keys = sample_keys(x, y)
    correct = model.predict(x) == y
    first = APGD()(model, x[correct], y[correct], ThreatModel(eps=args.eps), keys=keys[correct])
    x, y, keys = x[correct][~first.success], y[correct][~first.success], keys[correct][~first.success]
    print(f"robust after APGD-CE: {len(x)} of {args.points}")
    for targets in (1, 3, 9):
        started = time.perf_counter()
        result = APGDTargeted(n_target_classes=targets)(model, x, y, ThreatModel(eps=args.eps), keys=keys)
        print(f"APGD-T with {targets} target class(es): broke {int(result.success.sum())} "
              f"in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
