"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds ``checkpoint.json`` and one ``epoch-NNNN.safetensors``. The tensors file
holds the module's state dict (``model.*``), the best weights so far (``best.*``), the optimiser's
per-parameter state (``optimizer.*``) and the random generators' states (``rng.*``). The JSON holds
the run's configuration, the loop state (epoch, step, history, best so far), the optimiser's
structure (hyper-parameters and which tensor is which) and the SHA-256 of the tensors file.

Writes are atomic: each file goes to a temporary name, is flushed to disk, and is renamed over its
target; the JSON, written last, is the commit point. A crash at any moment leaves either the
previous checkpoint or the new one, whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from bastion.core.errors import InputError
from bastion.core.files import write_atomically
from bastion.defenses.training.record import EpochRecord

FORMAT = "bastion-training-checkpoint"
VERSION = 1
STATE_FILE = "checkpoint.json"


@dataclass
class LoopState:
    """Where a run stands after ``epoch`` complete epochs (``step`` optimiser steps)."""

    epoch: int = 0
    step: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_clean: float | None = None
    best_robust: float | None = None
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "history": [e.model_dump() for e in self.history],
                "best_epoch": self.best_epoch, "best_clean": self.best_clean, "best_robust": self.best_robust,
                "stopped_early": self.stopped_early}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        return cls(epoch=int(data["epoch"]), step=int(data["step"]),
                   history=[EpochRecord.model_validate(e) for e in data["history"]],
                   best_epoch=data["best_epoch"], best_clean=data["best_clean"], best_robust=data["best_robust"],
                   stopped_early=bool(data["stopped_early"]))


@dataclass
class Checkpoint:
    """A loaded checkpoint: loop state, named tensors and the optimiser's state dict."""

    loop: LoopState
    tensors: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors saved under ``prefix.``, with the prefix removed."""
        return {name[len(prefix) + 1 :]: t for name, t in self.tensors.items() if name.startswith(prefix + ".")}


def state_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state dict (parameters and buffers), unaffected by later training."""
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def module_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state dict: names, dtypes, shapes and values, in key order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- the optimiser's state dict as named tensors plus JSON ------------------------------------


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors named ``optimizer.<param>.<key>`` and a JSON structure."""
    tensors: dict[str, torch.Tensor] = {}
    per_parameter: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        slots: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"optimizer.{index}.{key}"
                tensors[name] = value.detach().cpu().clone().contiguous()
                slots[key] = {"tensor": name}
            else:
                slots[key] = {"value": _json_value(value, f"optimizer state {key}")}
        per_parameter[str(index)] = slots
    groups = [{key: _json_value(value, f"optimizer setting {key}") for key, value in group.items()}
              for group in state["param_groups"]]
    return tensors, {"state": per_parameter, "param_groups": groups}


def unflatten_optimizer(structure: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer` (lists in settings become tuples again, as ``betas``)."""
    state = {
        int(index): {key: tensors[slot["tensor"]] if "tensor" in slot else slot["value"]
                     for key, slot in slots.items()}
        for index, slots in structure["state"].items()
    }
    groups = [{key: tuple(value) if isinstance(value, list) and key != "params" else value
               for key, value in group.items()} for group in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


def _json_value(value: Any, what: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, bool | int | float | str) for v in value):
        return list(value)
    raise InputError(f"cannot checkpoint {what} of type {type(value).__name__} (not a number or a list of numbers)")


# --- writing ----------------------------------------------------------------------------------


def save_checkpoint(
    folder: Path,
    *,
    config: dict[str, Any],
    loop: LoopState,
    tensors: dict[str, torch.Tensor],
    optimizer_structure: dict[str, Any],
) -> None:
    """Write ``epoch-NNNN.safetensors`` then ``checkpoint.json`` atomically and remove older tensor files."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = save_tensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
    tensor_file = f"epoch-{loop.epoch:04d}.safetensors"
    write_atomically(folder / tensor_file, payload, sync=True)
    document = {"format": FORMAT, "version": VERSION, "config": config, "loop": loop.to_json(),
                "optimizer": optimizer_structure,
                "tensors": {"file": tensor_file, "sha256": hashlib.sha256(payload).hexdigest()}}
    write_atomically(folder / STATE_FILE, json.dumps(document, indent=1, sort_keys=True).encode(), sync=True)
    # Older tensor files, and temporary files a crash may have left behind.
    for stale in [*folder.glob("epoch-*.safetensors"), *folder.glob(".*.part"), *folder.glob(".*.tmp")]:
        if stale.name != tensor_file:
            stale.unlink(missing_ok=True)


# --- reading ----------------------------------------------------------------------------------


def has_checkpoint(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def load_checkpoint(folder: Path, config: dict[str, Any]) -> Checkpoint:
    """Read and verify the checkpoint in ``folder``, refusing one written by a different run configuration.

    The early stop's ``patience`` may differ: it decides when training stops, not what it computes, so a
    run that stopped early can be resumed with more patience (see ``bastion.defenses.training.loop.fit``).

    Raises:
        InputError: an unreadable or corrupt checkpoint, or one whose configuration differs from
            ``config`` (the message names the differing settings).
    """
    document = _read_document(folder)
    differences = config_differences(_without_patience(document["config"]), _without_patience(config))
    if differences:
        raise InputError(
            f"the checkpoint in {folder} was written by a different run ({'; '.join(differences)}). Resume with the "
            "same model, data, objective and settings, or start afresh with another checkpoint_dir"
        )
    tensors = _read_tensors(folder, document["tensors"])
    try:
        loop = LoopState.from_json(document["loop"])
        optimizer_state = unflatten_optimizer(document["optimizer"], tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise _corrupt(folder, f"incomplete loop or optimiser state ({exc})") from exc
    return Checkpoint(loop, tensors, optimizer_state)


def _read_document(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(folder, f"{STATE_FILE} is not readable JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"{path} is not a bastion training checkpoint; point checkpoint_dir at an empty folder")
    if document.get("version") != VERSION:
        raise InputError(f"{path} has checkpoint format version {document.get('version')}; this bastion reads "
                         f"version {VERSION}. Start afresh with another checkpoint_dir")
    missing = [key for key in ("config", "loop", "optimizer", "tensors") if key not in document]
    if missing:
        raise _corrupt(folder, f"{STATE_FILE} lacks {', '.join(missing)}")
    return document


def _read_tensors(folder: Path, reference: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / str(reference.get("file", ""))
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise _corrupt(folder, f"its tensor file cannot be read ({exc})") from exc
    if hashlib.sha256(payload).hexdigest() != reference.get("sha256"):
        raise _corrupt(folder, f"{path.name} does not match the SHA-256 recorded in {STATE_FILE}")
    try:
        return load_tensors(payload)
    except SafetensorError as exc:
        raise _corrupt(folder, f"{path.name} is not a valid safetensors file ({exc})") from exc


def _corrupt(folder: Path, why: str) -> InputError:
    return InputError(f"the checkpoint in {folder} is corrupt: {why}. Delete the folder to start afresh")


def _without_patience(config: Any) -> Any:
    """``config`` without ``validation.early_stop.patience`` (a copy; anything else is left as it is)."""
    early_stop = ((config.get("validation") or {}).get("early_stop") if isinstance(config, dict) else None)
    if not isinstance(early_stop, dict) or "patience" not in early_stop:
        return config
    return {**config, "validation": {**config["validation"],
                                     "early_stop": {k: v for k, v in early_stop.items() if k != "patience"}}}


def config_differences(saved: Any, current: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON configurations, by dotted key path."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found: list[str] = []
        for key in sorted(set(saved) | set(current)):
            name = f"{path}.{key}" if path else str(key)
            if key not in saved or key not in current:
                found.append(f"{name} only in the {'checkpoint' if key in saved else 'new run'}")
            else:
                found += config_differences(saved[key], current[key], name)
        return found
    if saved != current:
        return [f"{path}: checkpoint {_short(saved)}, now {_short(current)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
