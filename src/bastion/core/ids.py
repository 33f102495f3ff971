"""Stable sample ids: the SHA-256 of a sample's bytes plus its label, from ingest to report."""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING

import numpy as np

from bastion.core.errors import InputError

if TYPE_CHECKING:  # torch is imported where a tensor is made, so that ids (and the CLI) start without it
    import torch


def sample_id(x: np.ndarray, label: int) -> str:
    """Hex SHA-256 of one sample's canonical bytes (float32, C order, its shape) and its label."""
    array = np.ascontiguousarray(x, dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(str(array.shape).encode())
    digest.update(array.tobytes())
    digest.update(int(label).to_bytes(8, "little", signed=True))
    return digest.hexdigest()


def stored_sample_id(content: bytes, label: str) -> str:
    """Hex SHA-256 of a stored sample's bytes and its label's name: the id of a file-backed sample.

    ``content``: the sample as stored (an image file's bytes, a tabular row's canonical bytes);
    ``label``: the class name (an image's class folder, a row's label value). The label is hashed
    after a NUL separator, so no (content, label) pair collides with another by concatenation.
    """
    digest = hashlib.sha256(content)
    digest.update(b"\x00label=")
    digest.update(label.encode("utf-8"))
    return digest.hexdigest()


def sample_ids(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> list[str]:
    """Ids for a batch: ``x`` of shape ``(N, ...)``, ``y`` of shape ``(N,)``.

    Raises:
        InputError: ``x`` and ``y`` hold different numbers of samples.
    """
    x_np, y_np = _as_numpy(x), _as_numpy(y)
    if len(x_np) != len(y_np):
        raise InputError(f"x has {len(x_np)} samples but y has {len(y_np)} labels; give one label per sample")
    return [sample_id(xi, int(yi)) for xi, yi in zip(x_np, y_np, strict=True)]


def _as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """``values`` as a NumPy array; a tensor is detached and copied to the CPU first."""
    loaded = sys.modules.get("torch")  # torch not imported yet: ``values`` cannot be a tensor
    if loaded is not None and isinstance(values, loaded.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def keys_from_ids(ids: list[str]) -> torch.Tensor:
    """``(N,)`` int64 keys for keyed randomness, taken from the first 62 bits of each id."""
    import torch

    return torch.tensor([int(i[:16], 16) >> 2 for i in ids], dtype=torch.int64)


def sample_keys(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Keys computed from content, for callers that did not pass any."""
    return keys_from_ids(sample_ids(x, y))


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 over several arrays (shape, dtype and bytes), used as a dataset hash."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
