"""``bastion data poison``: write a poisoned copy of a dataset, to red-team a training pipeline and its audit.

The copy is an image folder (one sub-folder per class, PNG) or an ``.npz``; next to it,
``<out>.poison.json`` records the attack, its parameters and which samples it changed (by id and
location): the ground truth against which ``bastion data audit`` can be judged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from bastion.cli.console import console, user_errors
from bastion.cli.data import data_app
from bastion.core.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from bastion.attacks.poisoning import PoisoningAttack

AttackName = Literal["badnets", "blended", "label-flip"]


@data_app.command("poison")
def poison_command(
    source: Annotated[str, typer.Argument(help="The clean data: a folder of images per class, an .npz, or a built-in "
                                          "(digits:train, fashion-mnist:train).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Where to write the poisoned copy: a folder (images, PNG) or a file "
                                      "ending in .npz.", show_default=False)],
    attack: Annotated[AttackName, typer.Option(help="badnets (a white square patch), blended (a noise pattern "
                                               "mixed in) or label-flip (random wrong labels).")] = "badnets",
    rate: Annotated[float, typer.Option(help="Fraction of the whole set to poison, in [0, 1].")] = 0.05,
    target: Annotated[int, typer.Option(help="Backdoors: the class the trigger should produce.")] = 0,
    patch_size: Annotated[int, typer.Option(help="badnets: side of the square patch in pixels.")] = 3,
    seed: Annotated[int, typer.Option(help="Which samples are poisoned (and the blended pattern).")] = 0,
) -> None:
    """Write a poisoned copy of a dataset and a record of exactly which samples were changed."""
    from bastion.data.sources import load_dataset

    with user_errors():
        if out.exists():
            raise InputError(f"{out} already exists; choose a new --out (the clean data is never overwritten)")
        dataset = load_dataset(source)
        if not 0 <= target < len(dataset.class_names):
            raise InputError(f"--target must be a class index from 0 to {len(dataset.class_names) - 1}, got {target}")
        chosen = _attack(attack, target, patch_size, seed, dataset.bounds, len(dataset.class_names))
        poisoned = chosen.poison(dataset.x, dataset.y, rate=rate, seed=seed)
        staging = out.parent / f".{out.name}.partial"  # written aside, renamed into place when complete
        shutil.rmtree(staging, ignore_errors=True)
        try:
            if out.suffix.lower() == ".npz":
                locations = _write_npz(staging, poisoned.x, poisoned.y, dataset.class_names)
            else:
                locations = _write_images(staging, poisoned.x, poisoned.y, dataset.class_names, dataset.bounds)
            staging.rename(out)
        finally:
            if staging.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
            elif staging.exists():
                staging.unlink()
        from bastion.data.listing import list_samples

        by_location = {entry.location: entry.id for entry in list_samples(out).entries}
        rows = [int(i) for i in poisoned.source_indices]
        truth = {"attack": {"name": chosen.name, **chosen.get_params(), "rate": rate, "seed": seed}, "source": source,
                 "poisoned_count": len(rows), "count": len(dataset),
                 "poisoned": [{"location": locations[i], "id": by_location.get(locations[i]),
                               "original_label": dataset.class_names[int(dataset.y[i])]} for i in rows]}
        record = out.parent / f"{out.name}.poison.json"
        record.write_text(json.dumps(truth, indent=2))
    console.print(f"wrote {out}: {len(dataset)} samples, {len(rows)} poisoned by {attack} (rate {rate:g}); which ones: "
                  f"{record}", highlight=False)


def _attack(name: str, target: int, patch_size: int, seed: int, bounds: tuple[float, float],
            num_classes: int) -> PoisoningAttack:
    from bastion.attacks.poisoning import BadNets, Blended, LabelFlip

    if name == "badnets":
        return BadNets(target_class=target, size=patch_size, bounds=bounds)
    if name == "blended":
        return Blended(target_class=target, pattern_seed=seed, bounds=bounds)
    return LabelFlip(num_classes)


def _write_images(out: Path, x: np.ndarray, y: np.ndarray, class_names: list[str],
                  bounds: tuple[float, float]) -> list[str]:
    """One PNG per sample under ``out/<class name>/``; returns each sample's location."""
    import numpy as np
    from PIL import Image

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"an image folder needs images (N, 1 or 3, H, W), got {x.shape}; write an .npz instead")
    for name in class_names:  # each name becomes a folder under out/
        if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
            raise InputError(f"class name {name!r} cannot be a folder name (empty, hidden, or with a path "
                             "separator); rename the classes, or write an .npz instead")
    low, high = bounds
    pixels = np.rint(np.clip((x - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    locations = []
    width = len(str(len(x)))
    for i, (image, label) in enumerate(zip(pixels, y, strict=True)):
        location = f"{class_names[int(label)]}/{i:0{width}d}.png"
        path = out / location
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(path)
        locations.append(location)
    return locations


def _write_npz(out: Path, x: np.ndarray, y: np.ndarray, class_names: list[str]) -> list[str]:
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:  # np.savez would append .npz to the staging name
        np.savez(handle, x=x, y=y, class_names=np.asarray(class_names))
    return [f"x[{i}]" for i in range(len(x))]
