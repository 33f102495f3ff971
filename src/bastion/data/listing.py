"""Enumerate the samples of a dataset on disk: id, label, location and size of each, without decoding.

Formats (see :func:`list_samples`):

- a folder with one sub-folder per class of image files (``root/cat/001.png``): one sample per file,
  id ``stored_sample_id(file bytes, class folder name)``, location ``"cat/001.png"``;
- a ``.npz`` with arrays ``x`` and ``y``: one sample per row, id ``sample_id(x[i], y[i])`` (the same
  as an in-memory dataset), label ``str(y[i])``, location ``"x[17]"``;
- a ``.csv`` or ``.parquet`` table with a label column: one sample per row, id
  ``stored_sample_id(canonical row bytes, label text)`` (see :mod:`bastion.data.tabular`), location
  ``"row 18"`` (1-based data row).

Image folders are hashed straight from the file bytes (never decoded) by a pool of threads, each
reading with ``os.open``/``os.readv`` into its own buffer. :func:`list_rows` lists the same samples as
plain tuples, for callers that turn tens of thousands of them into something else (a manifest).

What an image folder may hold:

- hidden entries (names starting with ``.``, e.g. ``.DS_Store``) are skipped anywhere;
- an empty class folder is skipped: it holds no samples (so emptying a class shows as removals);
- a file at the top level, a folder inside a class folder, a file whose suffix is not an image
  suffix, a name that is not UTF-8, and a symbolic link that points outside the dataset folder or
  nowhere are errors naming the entry (``DatasetLayoutError``): the loader would ignore or could not
  label them, so a manifest must not silently leave them out. A verify against a manifest lists
  them all instead, as differences (``collect_strays=True``).
"""

from __future__ import annotations

import gc
import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import starmap
from operator import itemgetter
from pathlib import Path

from bastion.core.errors import PICKLE_SUFFIXES, InputError, UnsafeFileError
from bastion.data.schema import TabularSchema
from bastion.data.sources import IMAGE_SUFFIXES
from bastion.data.tabular import TABLE_SUFFIXES, read_table, row_hashes

FORMATS = ("image-folder", "npz", "csv", "parquet")
#: Files hashed per task of the thread pool.
CHUNK = 512
#: Bytes each worker thread reads at a time; most images fit in one read.
READ_BUFFER = 1 << 18
_LABEL_SEPARATOR = b"\x00label="
_IMAGE_ENDINGS = tuple(sorted(IMAGE_SUFFIXES))


class DatasetLayoutError(InputError):
    """An image folder holds an entry that is not a sample the loader reads: a stray file, a nested folder, a link
    that leaves the folder or leads nowhere. Against a manifest (``bastion data verify``) it is a change to the
    dataset, not a mistake in the command."""


@dataclass(frozen=True)
class SampleEntry:
    """One sample of a dataset on disk.

    Attributes:
        id: the sample id (64 hex characters), see the module docstring.
        label: the class name (image folder), ``str(y)`` (npz) or the label cell's text (tables).
        location: where it lives, relative to the dataset: ``"cat/001.png"``, ``"x[17]"``, ``"row 18"``.
        size: bytes hashed for the id (the file size for an image).
        digest: SHA-256 (hex) of the content alone, without the label: the same digest under two ids
            means the same content with another label.
    """

    id: str
    label: str
    location: str
    size: int
    digest: str = ""


#: A sample as a plain tuple, the fields of ``SampleEntry`` in order: ``(id, label, location, size, digest)``.
SampleRow = tuple[str, str, str, int, str]


@dataclass(frozen=True)
class SampleRows:
    """What :func:`list_samples` lists, as plain tuples: ``rows`` sorted by location (see ``SampleRow``)."""

    format: str
    root: Path
    rows: list[SampleRow]
    strays: list[str] = field(default_factory=list)  # see ``list_samples(collect_strays=True)``


@dataclass(frozen=True)
class DatasetListing:
    """Every sample of a dataset, ``entries`` sorted by location. ``format``: one of ``FORMATS``."""

    format: str
    root: Path
    entries: list[SampleEntry]
    strays: list[str] = field(default_factory=list)  # see ``list_samples(collect_strays=True)``

    @property
    def class_counts(self) -> dict[str, int]:
        """Samples per label, labels sorted."""
        return dict(sorted(Counter(e.label for e in self.entries).items()))

    @property
    def total_bytes(self) -> int:
        """Bytes hashed over all samples."""
        return sum(e.size for e in self.entries)


def list_samples(
    path: Path,
    *,
    schema: TabularSchema | None = None,
    label_column: str | None = None,
    workers: int | None = None,
    collect_strays: bool = False,
) -> DatasetListing:
    """Every sample of the dataset at ``path`` with its id, label, location and size.

    Args:
        path: an image folder (one sub-folder per class), a ``.npz``, a ``.csv`` or a ``.parquet`` file.
        schema: checks a table's columns and rows (every bad row is reported); tables only.
        label_column: a table's label column; default the schema's label, else ``"label"``.
        workers: threads hashing image files; default ``min(4, 2 * CPUs)``.
        collect_strays: ``True`` lists an image folder's entries that are not samples (a stray file, a nested
            folder, a link out of the folder...) in ``strays``, leaving them out, instead of raising
            ``DatasetLayoutError`` at the first; a folder with no class folders then lists no samples. For a
            comparison with a manifest, where such an entry is a difference like any other.

    Raises:
        InputError: a missing path, an unknown format, an entry that does not belong in an image folder
            (named; a ``DatasetLayoutError``), an unreadable file, or a table that breaks ``schema`` (a
            ``SchemaViolationError``).
        UnsafeFileError: a pickle file.
    """
    listed = list_rows(path, schema=schema, label_column=label_column, workers=workers, collect_strays=collect_strays)
    with gc_paused():
        entries = list(starmap(_entry, listed.rows))
    return DatasetListing(format=listed.format, root=listed.root, entries=entries, strays=listed.strays)


def list_rows(
    path: Path,
    *,
    schema: TabularSchema | None = None,
    label_column: str | None = None,
    workers: int | None = None,
    collect_strays: bool = False,
) -> SampleRows:
    """:func:`list_samples` (same arguments, same checks and errors), each sample a plain tuple ``SampleRow``.

    For callers that turn every sample into something else (a manifest's entries): a tuple costs a
    fraction of a ``SampleEntry``, which matters for tens of thousands of small files.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UnsafeFileError(f"{path}: bastion does not read pickle files ({suffix}); unpickling can run code. "
                              "Save the arrays with np.savez instead")
    if not path.exists():
        raise InputError(f"dataset not found: {path}")
    if (schema is not None or label_column is not None) and (path.is_dir() or suffix not in TABLE_SUFFIXES):
        raise InputError(f"{path}: a schema and a label column apply to CSV and Parquet tables only")
    found = dataset_format(path)
    with gc_paused():
        if found == "image-folder":
            return _list_image_folder(path.resolve(), workers, _Strays(collect_strays))
        if found == "npz":
            return _list_npz(path)
        if found is not None:
            return _list_table(path, schema, label_column)
    raise InputError(f"unknown dataset format: {path}. Give a folder of images with one sub-folder per class, "
                     "a .npz with arrays x and y, or a .csv/.parquet table with a label column")


def dataset_format(path: Path) -> str | None:
    """The format (one of ``FORMATS``) :func:`list_samples` reads ``path`` as, from its kind and suffix alone;
    ``None`` for none it reads."""
    if path.is_dir():
        return "image-folder"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in TABLE_SUFFIXES:
        return "csv" if suffix == ".csv" else "parquet"
    return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block; it resumes on exit if it was on.

    For code that makes one small object per sample (entries, listings): CPython runs a collection every
    few hundred new container objects, and ever longer full collections as they pile up, which for 70,000
    samples costs as much as hashing them. Such objects hold no reference cycles, so reference counting
    frees them without the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- image folder -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """Files of one class folder to hash: plain ``names`` inside it, or ``targets`` for symbolic links."""

    label: str
    folder: str
    names: list[str]
    targets: dict[str, str]


class _Strays:
    """Entries of an image folder that are not samples: each an error (``collect=False``, every caller but a verify)
    or a message in ``found``, the entry left out of the listing."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.found: list[str] = []

    def add(self, message: str) -> None:
        if not self.collect:
            raise DatasetLayoutError(message)
        self.found.append(message)


def _list_image_folder(root: Path, workers: int | None, strays: _Strays) -> SampleRows:
    count = workers if workers is not None else min(4, 2 * (os.cpu_count() or 1))
    if count < 1:
        raise InputError(f"workers must be >= 1, got {count}")
    futures: list[Future[list[SampleRow]]] = []
    found_class = False
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="bastion-hash") as pool:
        try:
            for entry in _scan(root):
                if entry.name.startswith("."):
                    continue
                target = _inside_root(entry, root, strays)
                if target is None:
                    continue
                if not os.path.isdir(target):
                    strays.add(f"{entry.path} is a file at the top of the image folder; an image dataset holds only "
                               f"class folders ({root}/<class>/<image>): move it into its class folder or out of the "
                               "dataset folder")
                    continue
                if not _is_utf8(entry.name, target, strays):
                    continue
                found_class = True
                names, targets = _class_files(entry.name, target, root, strays)
                # The threads hash this class's files while the next class folder is listed.
                futures.extend(pool.submit(_hash_batch, _Batch(entry.name, target, names[i:i + CHUNK], targets))
                               for i in range(0, len(names), CHUNK))
            parts = [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    if not found_class and not strays.collect:
        raise InputError(f"{root} has no class folders; an image dataset needs one sub-folder per class, "
                         f"e.g. {root}/cat/001.png")
    rows = [row for part in parts for row in part]
    rows.sort(key=_LOCATION)  # batches come in class order, not always in location order ("a-b/" < "a/")
    return SampleRows(format="image-folder", root=root, rows=rows, strays=strays.found)


def _class_files(label: str, folder: str, root: Path, strays: _Strays) -> tuple[list[str], dict[str, str]]:
    """Image names in a class folder (sorted), and the resolved targets of those that are links."""
    regular: list[os.DirEntry[str]] = []
    others: list[os.DirEntry[str]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:  # d_type answers is_file without a system call
                (regular if entry.is_file(follow_symlinks=False) else others).append(entry)
    except OSError as exc:
        raise InputError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    names = [name for name in (e.name for e in regular) if name[0] != "."]
    targets = {}
    for entry in sorted(others, key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        shown = f"{label}/{entry.name}"
        if entry.is_symlink():
            target = _inside_root(entry, root, strays, shown=shown)
            if target is None:
                continue
            if not os.path.isfile(target):
                strays.add(f"{root}/{shown} is a link to {target}, which is not a file; an image folder holds image "
                           "files only")
                continue
            targets[entry.name] = target
            names.append(entry.name)
        elif entry.is_dir():
            strays.add(f"{root}/{shown} is a folder inside the class folder {label!r}; an image dataset has one level "
                       "of class folders (root/<class>/<image>): move its images up a level")
        else:
            strays.add(f"{root}/{shown} is not a regular file; remove it from the dataset folder")
    names.sort()
    not_images = [n for n in names if not n.lower().endswith(_IMAGE_ENDINGS)]  # no name starts with "."
    if not_images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        if not strays.collect:
            more = f" ({len(not_images) - 1} more such file(s) in {label}/)" if len(not_images) > 1 else ""
            strays.add(f"{root}/{label}/{not_images[0]} is not an image (image suffixes: {suffixes}); training would "
                       "ignore it: move it out of the dataset folder, or convert it to a supported image format" + more)
        for name in not_images:
            strays.add(f"{root}/{label}/{name} is not an image (image suffixes: {suffixes})")
        names = [n for n in names if n.lower().endswith(_IMAGE_ENDINGS)]
    try:
        "/".join(names).encode("utf-8")
    except UnicodeEncodeError:
        names = [name for name in names if _is_utf8(name, f"{root}/{label}/{name}", strays)]
    return names, targets


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        raise InputError(f"cannot list {folder}: {exc.strerror or exc}") from exc


def _inside_root(entry: os.DirEntry[str], root: Path, strays: _Strays, *, shown: str | None = None) -> str | None:
    """The path to read for ``entry``; a link must resolve to a path inside ``root`` (else ``None``, the link
    recorded in ``strays``)."""
    if not entry.is_symlink():
        return entry.path
    target = os.path.realpath(entry.path)
    if os.path.commonpath([target, str(root)]) != str(root):
        strays.add(f"{root}/{shown or entry.name} is a symbolic link to {target}, outside the dataset folder {root}; "
                   "copy the file into the dataset instead, so that the manifest covers it")
        return None
    if not os.path.exists(target):
        strays.add(f"{root}/{shown or entry.name} is a broken symbolic link (to {target})")
        return None
    return target


def _is_utf8(name: str, shown: str, strays: _Strays) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        strays.add(f"{shown!r}: the name is not valid UTF-8; rename it")
        return False
    return True


_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    buffer = getattr(_local, "buffer", None)
    if buffer is None:
        data = bytearray(READ_BUFFER)
        buffer = _local.buffer = (data, memoryview(data))
    return buffer


def _hash_batch(batch: _Batch) -> list[SampleRow]:
    """Hash the files of one batch: each file's bytes, then the label after a separator.

    This loop runs once per file of the dataset, so it binds what it calls to local names.
    """
    buffer, view = _buffer()
    buffers = [buffer]
    label = batch.label
    suffix = _LABEL_SEPARATOR + label.encode("utf-8")
    prefix = label + "/"
    open_, readv, close, sha256, targets = os.open, os.readv, os.close, hashlib.sha256, batch.targets
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    rows: list[SampleRow] = []
    append = rows.append
    try:
        folder_fd = open_(batch.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {batch.folder}: {exc.strerror or exc}") from exc
    try:
        for name in batch.names:
            try:
                fd = open_(targets[name], os.O_RDONLY) if targets and name in targets else open_(
                    name, flags, dir_fd=folder_fd)
                try:
                    count = readv(fd, buffers)
                    digest = sha256(view[:count])
                    size = count
                    while count:  # read until the end of the file: a short read does not prove it
                        count = readv(fd, buffers)
                        if count:
                            digest.update(view[:count])
                            size += count
                finally:
                    close(fd)
            except OSError as exc:
                raise InputError(f"cannot read {batch.folder}/{name}: {exc.strerror or exc}") from exc
            content = digest.hexdigest()
            digest.update(suffix)
            append((digest.hexdigest(), label, prefix + name, size, content))
    finally:
        close(folder_fd)
    return rows


_new = object.__new__
_LOCATION = itemgetter(2)  # a SampleRow's location


def _entry(id: str, label: str, location: str, size: int, digest: str) -> SampleEntry:
    """A ``SampleEntry`` without the frozen dataclass's ``__init__`` (five ``object.__setattr__`` calls), which
    costs more than hashing a small image; same fields, same immutability."""
    entry = _new(SampleEntry)
    entry.__dict__.update(id=id, label=label, location=location, size=size, digest=digest)
    return entry


# --- .npz and tables --------------------------------------------------------------------------


def _list_npz(path: Path) -> SampleRows:
    from bastion.data.sources import _as_float_inputs, _encode_labels, _read_npz

    raw = _read_npz(path)
    labels = _encode_labels(raw.y, str(path))
    if len(raw.x) != len(labels):
        raise InputError(f"{path}: x has {len(raw.x)} samples but y has {len(labels)} labels")
    x = _as_float_inputs(raw.x, str(path))
    # core.ids.sample_id, computed in one pass with the content digest: SHA-256(shape, float32 bytes), then
    # the label as 8 little-endian bytes.
    shape = str(x.shape[1:]).encode()
    rows = []
    for i, (row, label) in enumerate(zip(x, labels.tolist(), strict=True)):
        digest = hashlib.sha256(shape)
        digest.update(row.tobytes())
        content = digest.hexdigest()
        digest.update(int(label).to_bytes(8, "little", signed=True))
        rows.append((digest.hexdigest(), str(label), f"x[{i}]", row.nbytes, content))
    rows.sort(key=_LOCATION)
    return SampleRows(format="npz", root=path.resolve(), rows=rows)


def _list_table(path: Path, schema: TabularSchema | None, label_column: str | None) -> SampleRows:
    table = read_table(path, label_column=label_column, schema=schema)
    rows = [(sample, label, f"row {row}", size, content)
            for row, label, (sample, content, size) in zip(table.rows, table.labels, row_hashes(table), strict=True)]
    rows.sort(key=_LOCATION)
    return SampleRows(format=table.format, root=path.resolve(), rows=rows)
