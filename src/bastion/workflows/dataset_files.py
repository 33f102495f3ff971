"""The files of a dataset version: the file index, copying files into the store and back out.

A version's file index (:class:`FileIndex`) names every file of the dataset and the object holding
its bytes. ``store_files`` puts the working copy's files into the object store and returns the
index; ``stage_files`` writes an index's files into a temporary sibling of the working copy and
``Swap`` puts them in its place, keeping the old copy until the change is final, so a failed
operation can put the working copy back as it was. ``refuse_unsaved`` keeps a checkout from
overwriting content that no version holds; ``undo_new_objects`` deletes the objects a failed
operation added.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from bastion.core.errors import InputError
from bastion.core.ids import file_digest, stored_sample_id
from bastion.data.manifest import Manifest
from bastion.storage.objects import ObjectStore


class FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: str
    size: int


class FileIndex(BaseModel):
    """Every file of one version and the object that holds its bytes.

    ``files`` maps a path relative to the dataset folder (``cat/001.png``) to its object; a dataset
    that is one file has one key, the file's name.
    """

    model_config = ConfigDict(extra="forbid")
    format: str
    kind: Literal["folder", "file"]
    files: dict[str, FileRecord]

    def digests(self) -> dict[str, str]:
        return {path: record.object for path, record in self.files.items()}


def store_files(objects: ObjectStore, root: Path, manifest: Manifest, before: str | None, created: set[str]
                ) -> FileIndex:
    """Copy every file of the dataset into the store, checking it still holds what was hashed."""
    if root.is_file():
        digest = objects.put_file(root, created=created)
        if digest != before:
            raise InputError(f"{root} changed while it was being committed; commit again once it is written")
        return FileIndex(format=manifest.format, kind="file",
                         files={root.name: FileRecord(object=digest, size=root.stat().st_size)})
    files: dict[str, FileRecord] = {}
    for entry in manifest.entries:
        file = root / entry.location
        data = file.read_bytes()
        digest = objects.put_bytes(data, created=created)
        # the listing's content digest when it has one (one hash per file), else the sample id
        if (entry.digest or "") != digest and stored_sample_id(data, entry.label) != entry.id:
            raise InputError(f"{file} changed while the dataset was being committed; commit again once it is "
                             "written")
        files[entry.location] = FileRecord(object=digest, size=len(data))
    return FileIndex(format=manifest.format, kind="folder", files=files)


def stage_files(objects: ObjectStore, index: FileIndex, target: Path) -> Path:
    """Write the index's files into a fresh temporary sibling of ``target``; returns that path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.name}.bastion-{uuid.uuid4().hex[:12]}"
    try:
        if index.kind == "file":
            (record,) = index.files.values()
            objects.copy_to(record.object, staged)
        else:
            staged.mkdir()
            for location, record in index.files.items():
                file = staged / safe_relative(location)
                file.parent.mkdir(parents=True, exist_ok=True)
                objects.copy_to(record.object, file)
    except BaseException:
        remove_path(staged)
        raise
    return staged


class Swap:
    """Replace ``target`` by ``staged`` with two renames, keeping the old one until ``discard``.

    Hidden entries of a folder (names starting with ``.``, e.g. ``.git``), which listing and commit skip,
    are left alone: they are moved into the new folder before the swap (and back on ``undo``), never
    compared nor deleted.
    """

    def __init__(self, staged: Path, target: Path) -> None:
        self.staged, self.target = staged, target
        self.old: Path | None = None
        self.applied = False
        self.hidden: list[Path] = []

    def apply(self) -> Swap:
        if self.target.is_dir() and not self.target.is_symlink() and self.staged.is_dir():
            self._carry_hidden()
        if self.target.exists() or self.target.is_symlink():
            self.old = self.target.parent / f".{self.target.name}.bastion-old-{uuid.uuid4().hex[:12]}"
            os.replace(self.target, self.old)
        try:
            os.replace(self.staged, self.target)
        except BaseException:
            if self.old is not None:
                os.replace(self.old, self.target)
                self.old = None
            self._return_hidden(self.staged, self.target)
            remove_path(self.staged)
            raise
        self.applied = True
        return self

    def _carry_hidden(self) -> None:
        """Move the target's hidden entries to the same places in the staged folder."""
        try:
            for relative in hidden_entries(self.target):
                destination = self.staged / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                if destination.exists() or destination.is_symlink():
                    remove_path(destination)
                os.replace(self.target / relative, destination)
                self.hidden.append(relative)
        except BaseException:
            self._return_hidden(self.staged, self.target)
            raise

    def _return_hidden(self, holder: Path, home: Path) -> None:
        """Move the carried hidden entries from ``holder`` back to ``home``."""
        for relative in reversed(self.hidden):
            source = holder / relative
            if source.exists() or source.is_symlink():
                (home / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, home / relative)
        self.hidden = []

    def undo(self) -> None:
        if self.applied:
            if self.old is not None:
                self._return_hidden(self.target, self.old)
            remove_path(self.target)
            if self.old is not None:
                os.replace(self.old, self.target)
        else:
            remove_path(self.staged)
        self.applied, self.old = False, None

    def discard(self) -> None:
        if self.old is not None:
            remove_path(self.old)
        self.old = None
        self.hidden = []


def hidden_entries(folder: Path) -> list[Path]:
    """Paths, relative to ``folder``, of its hidden entries (name starting with ``.``), not looking inside them."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            found.append(entry.relative_to(folder))
        elif entry.is_dir() and not entry.is_symlink():
            found.extend(entry.relative_to(folder) / inner for inner in hidden_entries(entry))
    return found


def is_hidden(relative: Path) -> bool:
    """Whether a relative path is hidden or lies in a hidden folder (listing skips it)."""
    return any(part.startswith(".") for part in relative.parts)


def refuse_unsaved(target: Path, *, kind: str, name: str, versions: Iterable[FileIndex],
                   instead: str = "choose another --out") -> None:
    """Raise unless ``target`` is absent, an empty folder, or exactly one of ``versions``.

    ``kind`` is the dataset's (``"file"`` or ``"folder"``), ``name`` its name for the message. ``versions``
    are the indexes of its committed versions, newest first; they are read only up to the first match.
    Hidden entries (``.git``, ``.DS_Store``) are not compared: restores leave them alone. ``instead`` is
    what the message offers besides ``--force`` (rollback has no ``--out``).
    """
    if not target.exists() or (target.is_dir() and not any(
            not is_hidden(file.relative_to(target)) for file in target.iterdir())):
        return
    found = _fingerprint(target, kind)
    if found is None:
        raise InputError(f"{target} is a {'folder' if target.is_dir() else 'file'}, not the {kind} a version of "
                         f"{name} is; pass --force to replace it, or {instead}")
    committed: set[tuple[str, str]] = set()
    for index in versions:
        files = _comparable(index)
        if found == files:
            return
        committed.update(files.items())
    unknown = sorted(set(found.items()) - committed)
    detail = f" (e.g. {', '.join(path or target.name for path, _ in unknown[:3])})" if unknown else ""
    raise InputError(f"{target} holds content that is not any committed version of {name}{detail}; "
                     f"it would be lost. Commit it first (bastion data commit), {instead}, or pass --force to "
                     "overwrite it")


def _fingerprint(target: Path, kind: str) -> dict[str, str] | None:
    """``{relative path: sha256}`` of every file under a folder, or ``{"": sha256}`` of one file."""
    if kind == "file":
        return {"": file_digest(str(target))} if target.is_file() else None
    if not target.is_dir():
        return None
    return {file.relative_to(target).as_posix(): file_digest(str(file))
            for file in sorted(target.rglob("*")) if file.is_file() and not is_hidden(file.relative_to(target))}


def _comparable(index: FileIndex) -> dict[str, str]:
    """The index in the shape ``_fingerprint`` gives, so a working copy can be compared with it."""
    if index.kind == "file":
        return {"": next(iter(index.files.values())).object}
    return index.digests()


class Undoable(Protocol):
    """A file change made in steps: ``undo`` puts everything back, ``discard`` drops what undo would need."""

    def undo(self) -> None: ...

    def discard(self) -> None: ...


@contextlib.contextmanager
def undone_on_failure(change: Undoable) -> Iterator[None]:
    """Run the block; if it raises, ``change.undo()`` and re-raise; if it ends, ``change.discard()``."""
    try:
        yield
    except BaseException:
        change.undo()
        raise
    change.discard()


@contextlib.contextmanager
def undo_new_objects(objects: ObjectStore) -> Iterator[set[str]]:
    """Yields a set that puts add new objects to; if the block raises, those objects are deleted again.

    Only objects this operation wrote are deleted, never ones that were already there; the store's lock
    (``store.lock``) keeps a concurrent operation on the same home from sharing a just-written object
    meanwhile.
    """
    created: set[str] = set()
    try:
        yield created
    except BaseException:
        for digest in created:
            objects.delete(digest)
        raise


def safe_relative(location: str) -> Path:
    """A stored relative path as a ``Path``; refuses one that is absolute or climbs out with ``..``."""
    path = PurePosixPath(location)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InputError(f"refusing the stored path {location!r}: it points outside the dataset folder")
    return Path(*path.parts)


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
