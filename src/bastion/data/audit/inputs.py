"""Input checks and vector views shared by the audits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bastion.core.errors import InputError

ArrayLike = np.ndarray | torch.Tensor


def as_array(values: object, name: str) -> np.ndarray:
    """A NumPy array from a NumPy array, a torch tensor or a sequence."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be an array, got {type(values).__name__}: {error}") from None


def check_ids(ids: Sequence[str], name: str = "ids") -> list[str]:
    """``ids`` as a list of strings (sample ids; equal ids are allowed: identical samples share one)."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
        raise InputError(f"{name} must be a list of sample id strings, got {type(ids).__name__}")
    out = [str(i) for i in ids]
    if not out:
        raise InputError(f"{name} is empty: there are no samples to audit")
    return out


def check_length(array: np.ndarray, n: int, name: str, ids_name: str = "ids") -> None:
    if array.ndim == 0 or len(array) != n:
        shape = array.shape if array.ndim else "a scalar"
        raise InputError(f"{name} must have one row per id ({n} rows, like {ids_name}), got shape {shape}")


def check_labels(labels: object, n: int) -> np.ndarray:
    """``labels`` as int64 ``(N,)`` class indices >= 0."""
    y = as_array(labels, "labels")
    check_length(y, n, "labels")
    if y.ndim != 1:
        raise InputError(f"labels must have shape (N,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.min() < 0:
        raise InputError(f"labels must be class indices >= 0, got a minimum of {int(y.min())}")
    return y.astype(np.int64)


def sample_vectors(
    x: ArrayLike | None, features: ArrayLike | None, n: int, *, max_side: int = 16, x_name: str = "x"
) -> np.ndarray:
    """``(N, D)`` float64 vectors for distance-based audits: ``features`` when given, else the flattened inputs.

    Images ``(N, C, H, W)`` larger than ``max_side`` on a side are first averaged down (area
    pooling) to at most ``max_side x max_side``, which keeps their coarse content and makes
    neighbour search affordable (a 28x28 image becomes 14x14 at the default ``max_side=16``).
    """
    if features is not None:
        vectors = as_array(features, "features")
        check_length(vectors, n, "features")
        if vectors.ndim != 2:
            raise InputError(f"features must have shape (N, D), got {vectors.shape}")
    elif x is not None:
        vectors = as_array(x, x_name)
        check_length(vectors, n, x_name)
        if vectors.ndim == 4 and max(vectors.shape[2:]) > max_side:
            vectors = _pool(vectors, max_side)
        vectors = vectors.reshape(n, -1)
    else:
        raise InputError("give the samples (x) or their features: the audit needs one of them")
    if not np.issubdtype(vectors.dtype, np.number) or not np.isfinite(vectors).all():
        raise InputError(f"{'features' if features is not None else x_name} must be finite numbers")
    return vectors.astype(np.float64)


def _pool(images: np.ndarray, max_side: int) -> np.ndarray:
    height, width = images.shape[2:]
    factor = int(np.ceil(max(height, width) / max_side))
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return torch.nn.functional.avg_pool2d(tensor, factor, ceil_mode=True).numpy()


def unit_rows(vectors: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Rows minus ``centre`` (when given), scaled to unit length (a zero row stays zero)."""
    shifted = vectors - centre if centre is not None else vectors
    norms = np.linalg.norm(shifted, axis=1, keepdims=True)
    return shifted / np.where(norms > 0, norms, 1.0)
