"""Taking samples out of a dataset's working copy for ``DatasetStore.quarantine``, in a way that can be undone.

``select_entries`` picks the manifest entries of the ids (and locations) given; a removal then takes
them out of the working copy: ``FolderRemoval`` moves an image folder's files aside, ``RowRemoval``
writes a one-file dataset (.npz, .csv, .parquet) again without the rows. Either one:

- ``apply(manifest_of)`` takes the samples out and returns the manifest of what is left;
- ``new_index(objects, created)`` is the file index of the new version;
- ``commit_files()`` puts the new files in place, inside the database transaction;
- ``undo()`` puts everything back as it was; ``discard()`` makes the change final;
- ``kept_at(entry)`` is where a removed sample's bytes are kept (``<home>/quarantine/<dataset>/v<N>/...``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bastion.core.errors import InputError
from bastion.core.files import write_atomically
from bastion.core.ids import file_digest, stored_sample_id
from bastion.data.listing import DatasetLayoutError
from bastion.data.manifest import Manifest, ManifestEntry
from bastion.storage.objects import ObjectStore
from bastion.workflows.dataset_files import FileIndex, FileRecord, Swap, remove_path, safe_relative

_NPZ_ROW = re.compile(r"x\[(\d+)\]")
_TABLE_ROW = re.compile(r"row (\d+)")


def select_entries(manifest: Manifest, ids: list[str], where: str,
                   locations: set[str] | None = None) -> list[ManifestEntry]:
    """Every entry of ``manifest`` with one of ``ids``, or only those at ``locations`` when given.

    Raises:
        InputError: an id that is no sample of the manifest, or a location that holds none of ``ids``.
    """
    by_id: dict[str, list[ManifestEntry]] = {}
    for entry in manifest.entries:
        by_id.setdefault(entry.id, []).append(entry)
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        shown = ", ".join(i[:16] + ("..." if len(i) > 16 else "") for i in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(f"{len(unknown)} id(s) are not samples of {where}: {shown}{more}; use the full 64-hex ids "
                         "from the manifest or the audit")
    chosen = [entry for i in ids for entry in by_id[i]]
    if locations is None:
        return chosen
    picked = [entry for entry in chosen if entry.location in locations]
    missing = locations - {entry.location for entry in picked}
    if missing:
        raise InputError(f"{len(missing)} location(s) of {where} hold none of the ids given: "
                         f"{', '.join(sorted(missing)[:5])}")
    return picked


def check_removed(old: Manifest, new: Manifest, chosen: list[ManifestEntry], name: str, number: int) -> None:
    """Raise unless ``new`` holds exactly the samples of ``old`` less ``chosen``."""
    expected = Counter(entry.id for entry in old.entries) - Counter(entry.id for entry in chosen)
    found = Counter(entry.id for entry in new.entries)
    if found != expected:
        changed = len(set((found - expected) | (expected - found)))
        raise InputError(f"the working copy of {name} differs from v{number} in {changed} sample(s) besides the "
                         f"quarantined ones; commit or check out v{number} before quarantining")


class FolderRemoval:
    """Quarantine in an image folder: move the samples' files aside, keeping their relative paths. A sample that is
    a symbolic link (to a file inside the dataset) is kept as the bytes it pointed to, and the link is removed:
    moved as it is, a relative link would point nowhere from the quarantine."""

    def __init__(self, root: Path, kept_root: Path, chosen: list[ManifestEntry], index: FileIndex) -> None:
        self.root, self.kept_root, self.chosen, self.index = root, kept_root, chosen, index
        self.moved: list[tuple[Path, Path, str | None]] = []  # (source, target, the link's text if it was one)
        self.removed_dirs: list[Path] = []

    def kept_at(self, entry: ManifestEntry) -> Path:
        return self.kept_root / safe_relative(entry.location)

    def apply(self, manifest_of: Callable[[Path], Manifest]) -> Manifest:
        """Move the files out; returns the manifest of what is left. Every file is read and checked before any is
        moved (a link may point at another chosen file)."""
        checked = []
        for entry in self.chosen:
            source = self.root / safe_relative(entry.location)
            try:
                data = source.read_bytes()
            except FileNotFoundError:
                raise InputError(f"{source} (sample {entry.id[:12]}) is missing from the working copy; check out "
                                 "the current version first") from None
            if stored_sample_id(data, entry.label) != entry.id:
                raise InputError(f"{source} differs from the current version (sample {entry.id[:12]}); commit or "
                                 "check out before quarantining")
            checked.append((source, self.kept_at(entry), data if source.is_symlink() else None))  # a link's bytes
        for source, target, data in checked:
            target.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                link = os.readlink(source)
                write_atomically(target, data)
                source.unlink()
                self.moved.append((source, target, link))
            else:
                shutil.move(source, target)
                self.moved.append((source, target, None))
        for folder in sorted({source.parent for source, *_ in self.moved}, key=lambda p: len(p.parts), reverse=True):
            if folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                self.removed_dirs.append(folder)
        try:
            return manifest_of(self.root)
        except DatasetLayoutError as error:
            raise InputError(f"without the chosen samples the dataset no longer lists: {error}. A sample left in it "
                             "may be a link to one of them: quarantine both, or replace the link with a copy of the "
                             "file") from None

    def new_index(self, objects: ObjectStore, created: set[str]) -> FileIndex:
        """The current index less the moved files (their objects stay: older versions hold them)."""
        gone = {entry.location for entry in self.chosen}
        return FileIndex(format=self.index.format, kind="folder",
                         files={path: record for path, record in self.index.files.items() if path not in gone})

    def commit_files(self) -> None:
        """The files already moved; nothing to swap."""

    def undo(self) -> None:
        for folder in reversed(self.removed_dirs):
            folder.mkdir(parents=True, exist_ok=True)
        for source, target, link in reversed(self.moved):
            source.parent.mkdir(parents=True, exist_ok=True)
            if link is None:
                shutil.move(target, source)
            else:
                os.symlink(link, source)
                target.unlink()
        self.moved.clear()
        prune_empty(self.kept_root)

    def discard(self) -> None:
        self.moved.clear()


class RowRemoval:
    """Quarantine in a one-file dataset: a new file without the rows, the removed rows kept aside."""

    def __init__(self, root: Path, kept_root: Path, chosen: list[ManifestEntry], index: FileIndex) -> None:
        self.root, self.kept_root, self.chosen, self.index = root, kept_root, chosen, index
        self.staged = root.parent / f".{root.stem}.bastion-{uuid.uuid4().hex[:12]}{root.suffix}"
        self.swap: Swap | None = None

    def kept_at(self, entry: ManifestEntry) -> Path:
        return self.kept_root / self.root.name

    def apply(self, manifest_of: Callable[[Path], Manifest]) -> Manifest:
        """Write the file without the rows next to the dataset; returns its manifest."""
        (record,) = self.index.files.values()
        if file_digest(str(self.root)) != record.object:
            raise InputError(f"{self.root} differs from the current version; commit or check out before "
                             "quarantining")
        rows = sorted({_row_position(entry.location) for entry in self.chosen})
        self.kept_root.mkdir(parents=True, exist_ok=True)
        _write_without_rows(self.root, rows, kept=self.staged, removed=self.kept_root / self.root.name)
        return manifest_of(self.staged)

    def new_index(self, objects: ObjectStore, created: set[str]) -> FileIndex:
        digest = objects.put_file(self.staged, created=created)
        return FileIndex(format=self.index.format, kind="file",
                         files={self.root.name: FileRecord(object=digest, size=self.staged.stat().st_size)})

    def commit_files(self) -> None:
        self.swap = Swap(self.staged, self.root).apply()

    def undo(self) -> None:
        if self.swap is not None:
            self.swap.undo()
        remove_path(self.staged)
        (self.kept_root / self.root.name).unlink(missing_ok=True)
        prune_empty(self.kept_root)

    def discard(self) -> None:
        if self.swap is not None:
            self.swap.discard()


def prune_empty(kept_root: Path) -> None:
    """Remove ``quarantine/<dataset>/v<N>`` and the folders above it that an undone quarantine left empty."""
    with contextlib.suppress(OSError):
        for folder in sorted(kept_root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                folder.rmdir()
    for folder in (kept_root, kept_root.parent, kept_root.parent.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty


# --- rows of one-file datasets ------------------------------------------------------------------


def _row_position(location: str) -> int:
    """0-based row of ``x[17]`` (an .npz row) or ``row 18`` (a 1-based CSV/Parquet data row)."""
    if match := _NPZ_ROW.fullmatch(location):
        return int(match.group(1))
    if match := _TABLE_ROW.fullmatch(location):
        return int(match.group(1)) - 1
    raise InputError(f"cannot quarantine the sample at {location!r}: not a row of an .npz, .csv or .parquet file")


def _write_without_rows(source: Path, rows: Sequence[int], *, kept: Path, removed: Path) -> None:
    """Write ``source`` without ``rows`` to ``kept`` and only those rows to ``removed`` (same format)."""
    suffix = source.suffix.lower()
    if suffix == ".npz":
        _split_npz(source, rows, kept, removed)
    elif suffix == ".csv":
        _split_csv(source, rows, kept, removed)
    elif suffix in (".parquet", ".pq"):
        _split_parquet(source, rows, kept, removed)
    else:
        raise InputError(f"cannot quarantine rows of {source}: only .npz, .csv and .parquet files have rows")


def _split_npz(source: Path, rows: Sequence[int], kept: Path, removed: Path) -> None:
    import zipfile

    import numpy as np

    with np.load(source, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    with zipfile.ZipFile(source) as archive:
        compressed = any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist())
    count = len(arrays["x"] if "x" in arrays else arrays["X"])
    mask = np.zeros(count, dtype=bool)
    mask[list(rows)] = True
    # every per-sample array (as long as x) is split; class_names and other metadata are kept whole
    split = {key for key, value in arrays.items() if key != "class_names" and value.ndim and len(value) == count}
    save = np.savez_compressed if compressed else np.savez
    for path, selection in ((kept, ~mask), (removed, mask)):
        with path.open("wb") as handle:
            save(handle, **{key: value[selection] if key in split else value for key, value in arrays.items()})


def _split_csv(source: Path, rows: Sequence[int], kept: Path, removed: Path) -> None:
    """Data rows are numbered like ``bastion.data.tabular``: every record after the header, blank ones too. Each
    record is moved as the lines it was read from, byte for byte (quoting, line endings, a byte-order mark)."""
    lines = list(io.StringIO(source.read_bytes().decode("utf-8"), newline=""))  # line endings as they are
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    spans, start = [], 0
    for _ in csv.reader(feed()):
        spans.append((start, consumed))
        start = consumed
    if not spans:
        raise InputError(f"{source} is empty; it has no header row")
    header, *data = ["".join(lines[begin:end]) for begin, end in spans]
    drop = set(rows)
    for path, chosen in ((kept, [r for i, r in enumerate(data) if i not in drop]),
                         (removed, [r for i, r in enumerate(data) if i in drop])):
        path.write_bytes("".join([header, *chosen]).encode("utf-8"))


def _split_parquet(source: Path, rows: Sequence[int], kept: Path, removed: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    drop = set(rows)
    mask = pa.array([i in drop for i in range(table.num_rows)])
    pq.write_table(table.filter(pa.compute.invert(mask)), kept)
    pq.write_table(table.filter(mask), removed)
