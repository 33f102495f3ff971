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
from typing import Literal

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
    """Replace ``target`` by ``staged`` with two renames, keeping the old one until ``discard``."""

    def __init__(self, staged: Path, target: Path) -> None:
        self.staged, self.target = staged, target
        self.old: Path | None = None
        self.applied = False

    def apply(self) -> Swap:
        if self.target.exists():
            self.old = self.target.parent / f".{self.target.name}.bastion-old-{uuid.uuid4().hex[:12]}"
            os.replace(self.target, self.old)
        try:
            os.replace(self.staged, self.target)
        except BaseException:
            if self.old is not None:
                os.replace(self.old, self.target)
                self.old = None
            remove_path(self.staged)
            raise
        self.applied = True
        return self

    def undo(self) -> None:
        if self.applied:
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


def refuse_unsaved(target: Path, *, kind: str, name: str, versions: Iterable[FileIndex]) -> None:
    """Raise unless ``target`` is absent, an empty folder, or exactly one of ``versions``.

    ``kind`` is the dataset's (``"file"`` or ``"folder"``), ``name`` its name for the message. ``versions``
    are the indexes of its committed versions, newest first; they are read only up to the first match.
    """
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    found = _fingerprint(target, kind)
    if found is None:
        raise InputError(f"{target} is a {'folder' if target.is_dir() else 'file'}, not the {kind} a version of "
                         f"{name} is; pass --force to replace it, or choose another --out")
    committed: set[tuple[str, str]] = set()
    for index in versions:
        files = _comparable(index)
        if found == files:
            return
        committed.update(files.items())
    unknown = sorted(set(found.items()) - committed)
    detail = f" (e.g. {', '.join(path or target.name for path, _ in unknown[:3])})" if unknown else ""
    raise InputError(f"{target} holds content that is not any committed version of {name}{detail}; "
                     "it would be lost. Commit it first, choose another --out, or pass --force to overwrite it")


def _fingerprint(target: Path, kind: str) -> dict[str, str] | None:
    """``{relative path: sha256}`` of every file under a folder, or ``{"": sha256}`` of one file."""
    if kind == "file":
        return {"": file_digest(str(target))} if target.is_file() else None
    if not target.is_dir():
        return None
    return {file.relative_to(target).as_posix(): file_digest(str(file))
            for file in sorted(target.rglob("*")) if file.is_file()}


def _comparable(index: FileIndex) -> dict[str, str]:
    """The index in the shape ``_fingerprint`` gives, so a working copy can be compared with it."""
    if index.kind == "file":
        return {"": next(iter(index.files.values())).object}
    return index.digests()


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
