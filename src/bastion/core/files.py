"""Whole-or-nothing file writes: a temporary file beside the target, renamed over it when complete.

A reader (or a process that dies mid-write) never sees half a file: the target holds either its old content or
the new. With ``sync=True`` the bytes and the rename are also flushed to disk, so they survive the machine
losing power, not only the process dying. The new file keeps the permissions of the file it replaces; a new
target gets those of any file the process creates (``0o666`` less the umask), not ``tempfile``'s private ``0o600``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(target: Path, *, sync: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``target``'s new content into; it replaces ``target`` when the block ends without
    an exception, and is removed when the block (or the write) fails.

    Args:
        target: the file to write; its folder must exist.
        sync: flush the file and the folder's entry to disk (``fsync``) before returning (default ``False``).

    Raises:
        OSError: the folder cannot be written, or the disk is full.
    """
    target = Path(target)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as out:
            with contextlib.suppress(FileNotFoundError):  # keep the replaced file's permissions
                mode = stat.S_IMODE(os.stat(target).st_mode)
                os.chmod(out.fileno() if os.chmod in os.supports_fd else temporary, mode)
            yield out
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if sync:
        _sync_folder(target.parent)


def write_atomically(target: Path, data: bytes, *, sync: bool = False) -> Path:
    """Write ``data`` to ``target`` whole (see :func:`atomic_file`); returns ``target``."""
    with atomic_file(target, sync=sync) as out:
        out.write(data)
    return Path(target)


def path_text(value: object) -> str | None:
    """``value`` as text when it is a ``str`` or an ``os.PathLike`` (a ``pathlib.Path``), else ``None``: for the
    functions that take a path or a name and refuse anything else in their own words."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    return None


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
