"""``report_folder``: a failed run removes the folders it created, and only those."""

from __future__ import annotations

import os

import pytest

from bastion.scan.report.writer import report_folder


def test_a_failed_run_removes_the_new_folders_and_keeps_one_with_files(tmp_path):
    with pytest.raises(RuntimeError), report_folder(tmp_path / "a" / "b" / "out"):
        raise RuntimeError("failed")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), report_folder(tmp_path / "a" / "out") as out:
        (out / "checkpoint.pt").write_text("kept")
        raise RuntimeError("failed")
    assert (tmp_path / "a" / "out" / "checkpoint.pt").read_text() == "kept"


def test_a_folder_reached_through_dot_dot_that_existed_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    with pytest.raises(RuntimeError), report_folder(os.path.join("new", "..", "existing", "report")):
        raise RuntimeError("failed")
    assert (tmp_path / "existing").is_dir(), "the user's empty folder was removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
