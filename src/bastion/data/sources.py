"""Load a labelled dataset from a file, a folder of images or a built-in name, without unpickling.

Accepted specs (see :func:`load_dataset`): ``data.npz``, ``data.csv``, ``data.parquet``, a folder
with one sub-folder per class, ``digits[:train|:test]`` and ``fashion-mnist[:train|:test]``. Pickle
files are refused: loading one can run arbitrary code. Every sample gets the id its manifest gives it
(:mod:`bastion.data.listing`): ``Dataset.sample_ids``.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bastion.core.errors import PICKLE_SUFFIXES, InputError, UnsafeFileError
from bastion.core.files import path_text
from bastion.core.ids import sample_ids as array_sample_ids
from bastion.core.ids import stored_sample_id
from bastion.data.builtin import BUILTINS
from bastion.data.raw import RawArrays

if TYPE_CHECKING:
    from bastion.data.schema import TabularSchema

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GRAY_MODES = frozenset({"1", "L", "LA"})

ACCEPTED_FORMATS = (
    "a .npz file with arrays x and y (integer class indices; optional class_names); "
    "a .csv or .parquet file with a label column and numeric feature columns (or a schema); "
    "a folder of images with one sub-folder per class (root/cat/001.png); "
    "a built-in: digits, digits:train, digits:test, fashion-mnist, fashion-mnist:train, "
    "fashion-mnist:test"
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset in memory, checked when it is built.

    Build one from a file with :func:`load_dataset`, or from arrays with ``Dataset(x=x, y=y)``.

    Attributes:
        x: inputs ``(N, *input_shape)`` float32, e.g. ``(N, 1, 28, 28)`` images or ``(N, D)`` rows.
        y: labels ``(N,)`` int64 in ``0 .. len(class_names) - 1``: integer class indices. Whole-number
            floats (``3.0``) are taken as int64; fractions, strings and negative labels are refused.
        class_names: one name per class; ``y == i`` means ``class_names[i]``. Empty (the default): the
            label numbers, ``"0" .. str(y.max())``.
        description: where the data came from and its size, for reports; default: the arrays' size.
        bounds: the valid input range ``(low, high)``, default ``(0, 1)``.
        ids: ``N`` stored sample ids (an image folder's files, a table's rows: the ids of its manifest),
            or ``None`` for arrays, whose ids are computed from ``x`` and ``y``; use ``sample_ids``.
            Take subsets with :meth:`subset`, which keeps the ids with their samples.

    Raises:
        InputError: ``x`` and ``y`` of different lengths, labels that are not class indices, fewer
            ``class_names`` than classes, or ``ids`` of another length.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str] = field(default_factory=list)
    description: str = ""
    bounds: tuple[float, float] = (0.0, 1.0)
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        source = self.description or "Dataset"
        y = _class_indices(self.y, source)
        if len(self.x) != len(y):
            raise InputError(f"{source}: x has {len(self.x)} samples but y has {len(y)} labels; "
                             "give one label per sample")
        object.__setattr__(self, "y", y)
        names = _given_names(self.class_names, source)
        object.__setattr__(self, "class_names", _class_names(names, int(y.max()) if len(y) else -1, source))
        if not self.description:
            object.__setattr__(self, "description", f"arrays: {len(y)} samples, shape {tuple(self.x.shape[1:])}")
        if self.ids is not None:
            object.__setattr__(self, "ids", tuple(self.ids))
            if len(self.ids) != len(self.y):
                raise InputError(f"{self.description}: {len(self.ids)} sample ids for {len(self.y)} samples; "
                                 "take subsets with Dataset.subset, which slices the ids with x and y")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_ids(self) -> list[str]:
        """``N`` sample ids (hex SHA-256): the stored ``ids``, else ``core.ids.sample_ids(x, y)``."""
        return list(self.ids if self.ids is not None else self._array_ids)

    @cached_property
    def _array_ids(self) -> tuple[str, ...]:
        return tuple(array_sample_ids(self.x, self.y))

    def subset(self, index: np.ndarray | slice | list[int], *, description: str | None = None) -> Dataset:
        """The samples at ``index`` (integer indices, a boolean mask or a slice), with their ids."""
        ids = None if self.ids is None else tuple(np.asarray(self.ids, dtype=object)[index].tolist())
        return replace(self, x=self.x[index], y=self.y[index], ids=ids,
                       description=self.description if description is None else description)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    label_column: str = "label",
    limit: int | None = None,
    bounds: tuple[float, float] | None = None,
    schema: TabularSchema | None = None,
) -> Dataset:
    """Load and validate the dataset named by ``spec``.

    Args:
        spec: a path (``.npz``, ``.csv``, ``.parquet``, an image folder; a ``str`` or an ``os.PathLike`` such
            as ``pathlib.Path``) or a built-in name; see ``ACCEPTED_FORMATS``. An ``.npz``'s ``y`` holds integer
            class indices (names go in ``class_names``); a table's text labels are class names, numbered in
            sorted order; an image folder's classes are its sub-folders, in sorted order.
            A string that names a built-in (``digits``) and also an existing file or folder here (``./digits``)
            is refused, naming both: either silent choice would scan data the user did not mean (the README's
            built-in, or their own folder), so the user picks with ``./digits`` or ``digits:test``. An
            ``os.PathLike`` is a path by its type, so an existing one is read as the path.
        label_column: the CSV/Parquet column holding the labels, default ``"label"`` (or the schema's).
        limit: keep only the first ``limit`` samples (in file order); ``None`` keeps all.
        bounds: the valid input range. ``None`` (default) means ``(0, 1)`` when the data lies in it
            (built-ins always), otherwise the data's own ``(min, max)``.
        schema: checks a CSV/Parquet table (types, ranges, categories; every bad row is reported) and
            says how its columns become features (see :func:`bastion.data.tabular.feature_matrix`).

    Raises:
        InputError: a missing file, an unknown format, or data that fails validation
            (``SchemaViolationError`` for rows that break ``schema``).
        UnsafeFileError: a pickle file, or an ``.npz`` holding object (pickled) arrays.
        TypeError: ``spec`` is neither a string nor a path (arrays in memory: build ``Dataset(x=x, y=y)``).
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of samples, got {limit}")
    text = _spec_text(spec)
    if not isinstance(spec, str) and _builtin_name(text) and Path(text).exists():
        text = os.path.join(os.curdir, text)  # a pathlib.Path("digits") that exists is that path
    raw = _read(text, label_column, schema)
    return _validated(raw, limit=limit, bounds=bounds)


def _spec_text(spec: object) -> str:
    """``spec`` as text (see :func:`~bastion.core.files.path_text`); anything else is a ``TypeError``."""
    text = path_text(spec)
    if text is not None:
        return text
    raise TypeError(
        f"load_dataset takes a path (a str or os.PathLike such as pathlib.Path) or a built-in name such as "
        f"'digits'; got {type(spec).__module__}.{type(spec).__qualname__}. For arrays in memory, build "
        "Dataset(x=x, y=y) from bastion.data instead"
    )


def _read(spec: str, label_column: str, schema: TabularSchema | None = None) -> RawArrays:
    name, _, split = spec.partition(":")
    if schema is not None and not spec.lower().endswith((".csv", ".parquet", ".pq")):
        raise InputError(f"{spec}: a schema applies to CSV and Parquet tables only")
    if _builtin_name(spec):
        _refuse_a_shadowed_path(spec, name, split)
        return BUILTINS[name.lower()](split or "test")
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UnsafeFileError(
            f"{path}: bastion does not load pickle files ({suffix}); unpickling can run arbitrary "
            "code hidden in the file. Save the arrays instead, e.g. "
            "np.savez('data.npz', x=x.astype('float32'), y=y.astype('int64'))"
        )
    if not path.exists():
        raise InputError(f"dataset not found: {path}. Accepted: {ACCEPTED_FORMATS}")
    if path.is_dir():
        return _read_image_folder(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".parquet", ".pq"):
        return _read_table(path, label_column, schema)
    raise InputError(f"unknown dataset format: {path}. Accepted: {ACCEPTED_FORMATS}")


def _builtin_name(spec: str) -> bool:
    """Whether ``spec`` names a built-in dataset (``digits``, ``Digits:train``)."""
    return spec.partition(":")[0].lower() in BUILTINS


def _refuse_a_shadowed_path(spec: str, name: str, split: str) -> None:
    """Refuse ``spec`` when it names a built-in dataset and also a file or folder that exists here (``digits``
    beside a ``./digits`` image folder).

    Neither reading is safe to pick silently: a user following the README means the built-in, a user who
    keeps a folder of that name means the folder, and a scan of the wrong data gives evidence about the wrong
    data with nothing to show for it but a description. So both are named, with the spelling that picks
    each one unambiguously (``./digits`` for the folder, ``digits:test`` for the built-in).
    """
    path = Path(spec)
    if not (path.exists() or path.is_symlink()):
        return
    kind = "folder" if path.is_dir() else "file"
    builtin = (f"pass {name}:test (the same data as '{spec}') or {name}:train" if not split
               else f"run from another folder (or rename the {kind})")
    raise InputError(f"'{spec}' names both the built-in dataset {name} and the {kind} {path} here; pass ./{spec} "
                     f"for the {kind}, or {builtin} for the built-in")


# --- validation -------------------------------------------------------------------------------


def _validated(raw: RawArrays, *, limit: int | None, bounds: tuple[float, float] | None) -> Dataset:
    x, source = raw.x, raw.source
    y = _encode_labels(raw.y, source)
    if len(x) != len(y):
        raise InputError(f"{source}: x has {len(x)} samples but y has {len(y)} labels")
    if len(y) == 0:
        raise InputError(f"{source}: the dataset is empty")
    ids = raw.ids
    if limit is not None:
        x, y = x[:limit], y[:limit]
        ids = None if ids is None else ids[:limit]
    x = _as_float_inputs(x, source)
    _check_non_negative(y, source)
    class_names = _class_names(raw.class_names, int(y.max()), source)
    final_bounds = _bounds(x, bounds or raw.bounds, source)
    description = (
        f"{source}: {len(y)} samples, shape {tuple(x.shape[1:])}, {len(class_names)} classes"
    )
    return Dataset(x=x, y=y, class_names=class_names, description=description, bounds=final_bounds, ids=ids)


def _class_indices(values: np.ndarray, source: str) -> np.ndarray:
    """``values`` as ``(N,)`` int64 class indices (see :func:`_encode_labels`), each ``>= 0``."""
    labels = _encode_labels(values, source)
    _check_non_negative(labels, source)
    return labels


def _encode_labels(values: np.ndarray, source: str) -> np.ndarray:
    """Labels ``(N,)`` int64 from integers or whole-number floats; strings and other types are refused.

    A string label is refused rather than numbered: numbering the names found in one file (by sort
    order, say) would give the same class another index in a file that lacks some classes.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise InputError(
            f"{source}: y must be one label per sample, shape (N,); got {values.shape}. "
            "Flatten it with y.reshape(-1)"
        )
    if values.dtype.kind in "biu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "f":
        integral = np.isfinite(values) & (values == np.round(values))
        if not integral.all():
            first = int(np.argmin(integral))
            raise InputError(
                f"{source}: labels must be integers (class indices); sample {first} has label "
                f"{values[first].item()!r}"
            )
        return values.astype(np.int64)
    kind = "strings" if values.dtype.kind in "US" else f"values of dtype {values.dtype}"
    example = f" such as {values[0].item()!r}" if len(values) else ""
    raise InputError(
        f"{source}: labels must be integer class indices 0..K-1; got {kind}{example}: convert them, "
        "e.g. y.astype(int), or give the names as class_names and their indices as y"
    )


def _check_non_negative(y: np.ndarray, source: str) -> None:
    """Refuse a negative label, naming the first sample that has one."""
    if len(y) and int(y.min()) < 0:
        first = int(np.argmax(y < 0))
        raise InputError(f"{source}: labels must be >= 0; sample {first} has label {int(y[first])}")


def _as_float_inputs(x: np.ndarray, source: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise InputError(f"{source}: x must be numeric; got dtype {x.dtype}")
    if x.ndim < 2:
        raise InputError(
            f"{source}: x must have shape (N, *input_shape), e.g. (N, D) or (N, C, H, W); "
            f"got {x.shape}"
        )
    if not len(x):
        raise InputError(f"{source}: x holds no samples (shape {x.shape}); there is nothing to use")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise InputError(
            f"{source}: x contains NaN or infinite values ({int((~finite).sum())} samples, the "
            f"first is sample {first}); drop or impute them first"
        )
    return x


def _given_names(names: list[str] | tuple[str, ...], source: str) -> list[str] | None:
    """``Dataset.class_names`` as a list, ``None`` when empty (names to be made from the labels)."""
    if isinstance(names, str):
        raise InputError(f"{source}: class_names is a list of names, one per class, e.g. ['cat', 'dog']; "
                         f"got the string {names!r}")
    return [str(name) for name in names] or None


def _class_names(names: list[str] | None, max_label: int, source: str) -> list[str]:
    """``names``, checked to name every label up to ``max_label``; ``None``: the label numbers as names."""
    if names is None:
        return [str(i) for i in range(max_label + 1)]
    if len(names) <= max_label:
        raise InputError(
            f"{source}: {len(names)} class names given but labels go up to {max_label}; "
            "give one name per class"
        )
    return list(names)


def _bounds(x: np.ndarray, bounds: tuple[float, float] | None, source: str) -> tuple[float, float]:
    low, high = float(x.min()), float(x.max())
    if bounds is None:
        return (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)
    if bounds[0] >= bounds[1]:
        raise InputError(f"bounds must be (low, high) with low < high; got {bounds}")
    if low < bounds[0] or high > bounds[1]:
        raise InputError(
            f"{source}: x has values in [{low:g}, {high:g}], outside the bounds {tuple(bounds)}; "
            "rescale the data or pass wider bounds"
        )
    return (float(bounds[0]), float(bounds[1]))


# --- .npz -------------------------------------------------------------------------------------


def _read_npz(path: Path) -> RawArrays:
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path} is not an .npz archive; save one with np.savez('{path.name}', x=x, y=y)"
        )
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        x_key = _pick_key(keys, ("x", "X"), path, "inputs")
        y_key = _pick_key(keys, ("y", "labels"), path, "labels")
        x = _npz_array(archive, x_key, path)
        y = _npz_array(archive, y_key, path)
        names = _npz_array(archive, "class_names", path) if "class_names" in keys else None
    if names is not None and names.dtype.kind not in "US":
        raise InputError(
            f"{path}: class_names must be an array of strings; got dtype {names.dtype}"
        )
    return RawArrays(x, y, None if names is None else names.astype(str).tolist(), str(path))


def _pick_key(keys: list[str], candidates: tuple[str, ...], path: Path, what: str) -> str:
    for key in candidates:
        if key in keys:
            return key
    raise InputError(
        f"{path} has no array named {' or '.join(candidates)} for the {what}; arrays found: "
        f"{', '.join(keys) or 'none'}. Save with np.savez(path, x=x, y=y)"
    )


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeFileError(
                f"{path}: array {key!r} is an object array, stored as a pickle; bastion does not "
                "unpickle data because that can run arbitrary code. Save numeric (or string) "
                "arrays instead, e.g. x.astype('float32')"
            ) from exc
        raise InputError(f"{path}: cannot read array {key!r}: {exc}") from exc


# --- image folder -----------------------------------------------------------------------------


def _read_image_folder(root: Path) -> RawArrays:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputError(
            f"{root} has no sub-folders; an image dataset needs one sub-folder per class, "
            f"e.g. {root}/cat/001.png"
        )
    folder_labels, class_names = _folder_labels([d.name for d in class_dirs])
    images: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    first: tuple[Path, tuple[int, ...]] | None = None
    for label, class_dir in zip(folder_labels, class_dirs, strict=True):
        # Hidden files are skipped, as the listing behind manifests and ids skips them: a sample that is loaded
        # must be one that `data verify` sees.
        files = sorted(f for f in class_dir.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if not files:
            raise InputError(
                f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for file in files:
            content = _read_bytes(file)
            image = _read_image(content, file)
            if first is None:
                first = (file, image.shape)
            elif image.shape != first[1]:
                raise InputError(
                    f"{file} has shape (C, H, W) = {image.shape} but {first[0]} has {first[1]}; "
                    "all images must have the same size and colour mode: resize or convert them"
                )
            images.append(image)
            labels.append(label)
            ids.append(stored_sample_id(content, class_dir.name))
    return RawArrays(np.stack(images), np.array(labels), class_names, str(root), ids=tuple(ids))


def _folder_labels(names: list[str]) -> tuple[list[int], list[str]]:
    """Each class folder's label, and the class names, for folders ``names`` in sorted order.

    Folders named by class numbers (``0`` .. ``9``, written in ASCII digits, no two for the same number) are
    those classes, so a folder that holds some classes only keeps their numbers (``5`` stays class 5, ``10``
    comes after ``9``); other names are numbered in sorted order (``cat`` 0, ``dog`` 1).
    """
    numbers = [int(name) for name in names if name.isascii() and name.isdigit()]
    if len(numbers) == len(names) and len(set(numbers)) == len(numbers):
        return numbers, [str(label) for label in range(max(numbers) + 1)]
    return list(range(len(names))), list(names)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {file}: {exc.strerror or exc}") from exc


def _read_image(content: bytes, file: Path) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1]: one channel for greyscale images, three for colour."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            mode = "L" if image.mode in _GRAY_MODES else "RGB"
            pixels = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise InputError(f"cannot read image {file}: it is not an image format Pillow can decode (a corrupt or "
                          "truncated file?): replace or remove it") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {file}: {exc}") from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


# --- .csv and .parquet ------------------------------------------------------------------------


def _read_table(path: Path, label_column: str, schema: TabularSchema | None) -> RawArrays:
    """Features and labels of a table; its ids are those of :func:`bastion.data.listing.list_samples`."""
    from bastion.data.tabular import feature_matrix, read_table, row_hashes

    # The default label column gives way to the schema's label.
    label = None if schema is not None and label_column == "label" else label_column
    table = read_table(path, label_column=label, schema=schema)
    x = feature_matrix(table, schema)
    ids = tuple(sample for sample, _, _ in row_hashes(table))
    labels, names = _table_labels(table.labels)
    return RawArrays(x, labels, names, str(path), ids=ids)


def _table_labels(labels: list[str]) -> tuple[np.ndarray, list[str] | None]:
    """Numeric labels as floats (checked for integers later) and no names; otherwise the labels are class
    names, numbered in sorted order: ``(indices, sorted names)``."""
    try:
        return np.array([float(label) for label in labels], dtype=np.float64), None
    except ValueError:
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[label] for label in labels], dtype=np.int64), names
