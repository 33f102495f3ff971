"""Whole-or-nothing file writes (``bastion.core.files``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bastion.core.files import atomic_file, write_atomically


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("sync", [False, True])
def test_the_new_content_replaces_the_old_whole(tmp_path: Path, sync: bool) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    assert write_atomically(target, b"new content", sync=sync) == target
    assert target.read_bytes() == b"new content" and _hidden(tmp_path) == []


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as out:
        out.write(b"half of it")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and _hidden(tmp_path) == []


def test_a_failed_rename_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def refuse(*args: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="read-only"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old" and _hidden(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions_are_kept_or_those_of_a_plain_new_file(tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    write_atomically(kept, b"new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"")
    fresh = write_atomically(tmp_path / "fresh.txt", b"new")
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # not tempfile's 0o600


def test_a_missing_folder_is_an_os_error_that_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        write_atomically(tmp_path / "missing" / "file.bin", b"data")
