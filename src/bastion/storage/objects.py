"""A content-addressed object store on disk: each object is a file named by the SHA-256 of its bytes.

Layout: ``<root>/ab/cdef...`` (the first two hex digits name a sub-folder, so no folder holds more
than a few thousand files). Writes go to a temporary file in the same folder and are renamed into
place, so an object is either absent or complete; writing the same bytes twice is a no-op. Every read
re-hashes the bytes and raises ``CorruptObjectError`` when they no longer match their name.

Objects are not fsynced one by one (a commit of 70,000 images would crawl); a write torn by a power
cut is caught by that hash check on the next read.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from bastion.core.errors import BastionError, InputError
from bastion.core.files import atomic_file

_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")


class CorruptObjectError(BastionError):
    """An object's bytes no longer hash to its name: the store was damaged or tampered with."""


class MissingObjectError(BastionError):
    """An object a record refers to is not in the store (deleted, or the store was moved)."""


class ObjectStore:
    """Objects under ``root`` (``<home>/objects`` by convention), addressed by hex SHA-256.

    The folder is created on the first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ObjectStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        """Where the object ``digest`` lives (whether or not it exists)."""
        if not _DIGEST.fullmatch(digest):
            raise InputError(f"{digest!r} is not an object id; ids are 64 lower-case hex digits (SHA-256)")
        return self.root / digest[:2] / digest[2:]

    def __contains__(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes, *, created: set[str] | None = None) -> str:
        """Store ``data``; returns its hex SHA-256. Idempotent.

        ``created``: if given, the digest is added to it when this call wrote a new object (so a caller
        can delete exactly what it added if its operation fails).
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest
        self._write(target, lambda handle: handle.write(data))
        if created is not None:
            created.add(digest)
        return digest

    def put_file(self, source: str | Path, *, created: set[str] | None = None) -> str:
        """Store a copy of the file ``source`` (streamed, hashed while copied); returns its hex SHA-256.

        ``created``: as for ``put_bytes``.
        """
        source = Path(source)
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        handle, temp = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
        try:
            with os.fdopen(handle, "wb") as out, source.open("rb") as file:
                for chunk in iter(lambda: file.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            target = self.path(digest.hexdigest())
            if target.is_file() and target.stat().st_size == Path(temp).stat().st_size:
                Path(temp).unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, target)
                if created is not None:
                    created.add(digest.hexdigest())
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def get_bytes(self, digest: str) -> bytes:
        """The object's bytes, after checking they still hash to ``digest``."""
        data = self._open(digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise self._corrupt(digest)
        return data

    def copy_to(self, digest: str, dest: str | Path) -> None:
        """Write the object to the file ``dest`` (created or replaced), checking its hash while copying.

        On a mismatch ``dest`` is removed and ``CorruptObjectError`` raised; the caller writes into a
        temporary location it can throw away.
        """
        source, dest = self._open(digest), Path(dest)
        hasher = hashlib.sha256()
        try:
            with source.open("rb") as file, dest.open("wb") as out:
                for chunk in iter(lambda: file.read(_CHUNK), b""):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise self._corrupt(digest)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def check(self, digest: str) -> None:
        """Raise ``MissingObjectError`` or ``CorruptObjectError`` unless the object is intact."""
        hasher = hashlib.sha256()
        with self._open(digest).open("rb") as file:
            for chunk in iter(lambda: file.read(_CHUNK), b""):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            raise self._corrupt(digest)

    def delete(self, digest: str) -> None:
        """Remove an object (used to undo a failed commit's fresh objects; never for shared ones)."""
        self.path(digest).unlink(missing_ok=True)

    def __iter__(self) -> Iterator[str]:
        """Every stored object's digest (unordered)."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) == 2:
                for file in folder.iterdir():
                    if _DIGEST.fullmatch(folder.name + file.name):
                        yield folder.name + file.name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _open(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            raise MissingObjectError(f"object {digest} is not in the store {self.root} (expected at {path}); it "
                                     "was deleted or the store was moved: restore it from a backup")
        return path

    def _corrupt(self, digest: str) -> CorruptObjectError:
        return CorruptObjectError(f"object {digest} in {self.root} is corrupt: its bytes no longer hash to its name "
                                  f"({self.path(digest)}); restore the file from a backup")

    def _write(self, target: Path, write: Callable[[BinaryIO], object]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as out:
            write(out)

