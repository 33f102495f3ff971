"""Built-in datasets: scikit-learn's digits and Fashion-MNIST from Debian's IDX files."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bastion.core.errors import InputError
from bastion.data.raw import RawArrays

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "BASTION_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _check_split(name: str, split: str) -> None:
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r} for {name}; use {name}:train or {name}:test")


def _load_digits(split: str) -> RawArrays:
    """scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` in [0, 1]; a fixed stratified 70/30 split."""
    _check_split("digits", split)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=0.3, random_state=0, stratify=bunch.target
    )
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return RawArrays(x, y, [str(i) for i in range(10)], f"digits:{split}", bounds=(0.0, 1.0))


def _load_fashion_mnist(split: str) -> RawArrays:
    """Fashion-MNIST from the Debian IDX files as ``(N, 1, 28, 28)`` in [0, 1]."""
    _check_split("fashion-mnist", split)
    folder = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    missing = [f.name for f in (images_file, labels_file) if not f.is_file()]
    if missing:
        raise InputError(
            f"Fashion-MNIST files not found in {folder} (missing {', '.join(missing)}). Install "
            f"them with `apt-get install dataset-fashion-mnist`, or set {FASHION_MNIST_ENV} to "
            "a folder holding the IDX files"
        )
    images = _read_idx(images_file, ndim=3)
    labels = _read_idx(labels_file, ndim=1)
    x = images[:, None].astype(np.float32) / 255.0
    return RawArrays(x, labels, list(FASHION_MNIST_CLASSES), f"fashion-mnist:{split}", (0.0, 1.0))


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array (gzipped): magic ``00 00 08 ndim``, big-endian sizes, data."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    magic = bytes([0, 0, 0x08, ndim])
    if data[:4] != magic:
        raise InputError(
            f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s): magic number "
            f"{data[:4].hex()}, expected {magic.hex()}"
        )
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    body = np.frombuffer(data, dtype=np.uint8, offset=min(header, len(data)))
    if len(dims) != ndim or body.size != int(np.prod(dims)):
        raise InputError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims)


BUILTINS: dict[str, Callable[[str], RawArrays]] = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
}
