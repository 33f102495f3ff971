"""Dataset versions: commit, checkout and rollback restore bytes exactly; quarantine moves samples out and
records them; a malformed dataset or any failure leaves the store as it was; a damaged object is caught.
Datasets are a few hundred of scikit-learn's digits written as PNGs (or one .npz / .csv file)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sqlalchemy import func, select
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.errors import InputError
from bastion.data.manifest import build_manifest
from bastion.storage import CorruptObjectError, MissingObjectError, ledger
from bastion.storage.objects import ObjectStore
from bastion.storage.tables import QuarantinedSampleRow
from bastion.workflows import dataset_store
from bastion.workflows.dataset_store import open_dataset_store

IMAGES = 300
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """``IMAGES`` digits as 8x8 greyscale PNGs in one folder per class, written once per module."""
    digits = load_digits()
    root = tmp_path_factory.mktemp("pristine") / "train"
    for i in range(IMAGES):
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 15).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    copy = tmp_path / "work" / "train"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    with open_dataset_store(tmp_path / "home") as opened:
        yield opened


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or the one file ``root``) and its bytes."""
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def state(store) -> tuple[object, ...]:
    """What a failed operation must leave as it was: versions, objects, ledger, quarantine folder."""
    with store.database.sessions() as session:
        entries = [(e.seq, e.entry_hash) for e in ledger.entries(session)]
        check = ledger.verify(session)
    versions = [(v.dataset, v.version, v.current) for d in store.datasets() for v in store.log(d.name)]
    kept = sorted(p.as_posix() for p in store.quarantine_root.rglob("*")) if store.quarantine_root.exists() else []
    return versions, len(store.objects), entries, check.ok, kept


def change(root: Path) -> None:
    """Edit one image, delete one, add one, and relabel one (move it to another class)."""
    (root / "0" / "0000.png").write_bytes((root / "1" / "0001.png").read_bytes())
    next(iter(sorted((root / "2").iterdir()))).unlink()
    shutil.copy(root / "3" / "0003.png", root / "3" / "extra.png")
    moved = next(iter(sorted((root / "4").iterdir())))
    moved.rename(root / "5" / moved.name)


def test_commit_change_commit_then_checkout_v1_is_byte_identical(store, folder, tmp_path):
    v1_files = snapshot(folder)
    v1 = store.commit(folder, message="vendor export", actor="alice")
    assert (v1.version, v1.sample_count, v1.parent, v1.current, v1.author) == (1, IMAGES, None, True, "alice")
    assert v1.dataset == "train" and v1.format == "image-folder"
    change(folder)
    v2_files = snapshot(folder)
    v2 = store.commit(folder, message="fixes", actor="bob")
    assert (v2.version, v2.parent, v2.sample_count) == (2, 1, IMAGES)
    assert v2.merkle_root != v1.merkle_root
    assert [(v.version, v.current) for v in store.log("train")] == [(1, False), (2, True)]

    out = store.checkout("train", "v1", dest=tmp_path / "restored")
    assert snapshot(out) == v1_files
    store.checkout("train", 1)  # the working copy holds v2, a committed version: safe to replace
    assert snapshot(folder) == v1_files
    store.checkout(None, "2")
    assert snapshot(folder) == v2_files
    assert store.version("train").version == 2  # checkout does not move the current version
    assert not list(folder.parent.glob(".train.bastion-*"))  # no temporary folders left behind


def test_checkout_refuses_to_overwrite_uncommitted_changes_unless_forced(store, folder):
    v1_files = snapshot(folder)
    store.commit(folder, message="v1", actor="alice")
    (folder / "7" / "mine.png").write_bytes(b"not committed anywhere")
    with pytest.raises(InputError, match="not any committed version.*7/mine.png"):
        store.checkout("train", 1)
    assert (folder / "7" / "mine.png").exists()
    store.checkout("train", 1, force=True)
    assert snapshot(folder) == v1_files


def test_nothing_to_commit_and_bad_input(store, folder, tmp_path):
    store.commit(folder, message="v1", actor="alice")
    with pytest.raises(InputError, match="nothing changed"):
        store.commit(folder, message="again", actor="alice")
    with pytest.raises(InputError, match="needs a message"):
        store.commit(folder, message=" ", actor="alice")
    with pytest.raises(InputError, match="tracked at"):
        store.commit(shutil.copytree(folder, tmp_path / "other" / "train"), message="x", actor="alice")
    with pytest.raises(InputError, match="has no version 'v9'; versions: v1"):
        store.checkout("train", "v9")
    with pytest.raises(InputError, match="no dataset named 'test'"):
        store.log("test")


def test_rollback_restores_byte_identical_data_and_is_recorded(store, folder):
    v1_files = snapshot(folder)
    store.commit(folder, message="v1", actor="alice")
    change(folder)
    store.commit(folder, message="v2", actor="alice")
    info = store.rollback("train", "v1", actor="carol")
    assert info.version == 1 and info.current and snapshot(folder) == v1_files
    assert store.version("train").version == 1
    with store.database.sessions() as session:
        last = ledger.entries(session, limit=1)[0]
        assert ledger.verify(session).ok
    assert (last.action, last.actor, last.payload["version"], last.payload["from_version"]) == \
        ("dataset.rollback", "carol", 1, 2)
    with pytest.raises(InputError, match="already the current version"):
        store.rollback("train", 1, actor="carol")
    change(folder)
    assert store.commit(folder, message="after rollback", actor="alice").parent == 1


def test_quarantine_moves_samples_out_and_records_them(store, folder, tmp_path):
    v1 = store.commit(folder, message="v1", actor="alice")
    before = snapshot(folder)
    chosen = store.manifest("train").entries[10:15]
    ids = [entry.id for entry in chosen]
    with pytest.raises(InputError, match="approve"):
        store.quarantine("train", ids, reason="suspected poison", actor="alice")
    with pytest.raises(InputError, match="1 id.* not samples of train v1: " + "ab" * 8):
        store.quarantine("train", [*ids, "ab" * 32], reason="suspected poison", actor="alice", approved=True)
    assert snapshot(folder) == before

    v2 = store.quarantine("train", ids, reason="suspected poison", actor="alice", approved=True)
    assert (v2.version, v2.parent, v2.sample_count, v2.current) == (2, 1, IMAGES - 5, True)
    assert "suspected poison" in v2.message
    kept = tmp_path / "home" / "quarantine" / "train" / "v2"
    for entry in chosen:
        assert not (folder / entry.location).exists()
        assert (kept / entry.location).read_bytes() == before[entry.location]  # bytes kept as they were
    assert not {entry.id for entry in store.manifest("train", 2).entries} & set(ids)
    assert build_manifest(folder).merkle_root == v2.merkle_root
    with store.database.sessions() as session:
        rows = session.scalars(select(QuarantinedSampleRow)).all()
        last = ledger.entries(session, limit=1)[0]
        assert ledger.verify(session).ok
        assert {r.version.number for r in rows} == {2} and {r.reason for r in rows} == {"suspected poison"}
    assert sorted(r.sample_id for r in rows) == sorted(ids) and {r.actor for r in rows} == {"alice"}
    assert {r.location for r in rows} == {e.location for e in chosen}
    assert (last.action, last.payload["ids"], last.payload["from_version"]) == ("dataset.quarantine", ids, 1)
    transforms = store.manifest("train").provenance.transforms
    assert transforms[-1] == "quarantine: removed 5 sample(s) from v1 (suspected poison)"

    store.rollback("train", v1.version, actor="alice")  # the samples come back with the old version
    assert snapshot(folder) == before


def test_malformed_dataset_gives_a_clear_error_and_changes_nothing(store, folder, tmp_path):
    store.commit(folder, message="v1", actor="alice")
    change(folder)
    (folder / "3" / "notes.txt").write_text("not an image")
    before = state(store)
    with pytest.raises(InputError, match="notes.txt is not an image"):
        store.commit(folder, message="v2", actor="alice")
    assert state(store) == before

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(InputError, match="broken.npz"):
        store.commit(broken, message="arrays", actor="alice")
    assert state(store) == before and store.datasets()[0].name == "train" and len(store.datasets()) == 1


def test_failure_inside_the_transaction_leaves_no_half_written_version(store, folder, monkeypatch):
    store.commit(folder, message="v1", actor="alice")
    change(folder)
    before, files = state(store), snapshot(folder)

    def broken_append(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset_store, "append_entry", broken_append)
    with pytest.raises(RuntimeError, match="disk full"):
        store.commit(folder, message="v2", actor="alice")
    assert state(store) == before  # no version row, no new objects, no ledger entry

    store.checkout("train", 1, force=True)
    files = snapshot(folder)
    ids = [entry.id for entry in store.manifest("train").entries[:3]]
    with pytest.raises(RuntimeError, match="disk full"):
        store.quarantine("train", ids, reason="x", actor="alice", approved=True)
    assert state(store) == before and snapshot(folder) == files  # the samples were put back
    with store.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedSampleRow)) == 0

    monkeypatch.undo()
    change(folder)
    store.commit(folder, message="v2", actor="alice")
    before, files = state(store), snapshot(folder)
    monkeypatch.setattr(dataset_store, "append_entry", broken_append)
    with pytest.raises(RuntimeError, match="disk full"):
        store.rollback("train", 1, actor="alice")
    assert state(store) == before and snapshot(folder) == files  # still v2, on disk and in the database
    assert not list(folder.parent.glob(".train.bastion-*"))


def test_corrupt_object_is_detected_and_nothing_is_overwritten(store, folder, tmp_path):
    store.commit(folder, message="v1", actor="alice")
    index = store.file_index("train")
    location, record = sorted(index.files.items())[0]
    damaged = store.objects.path(record.object)
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CorruptObjectError, match=record.object):
        store.checkout("train", 1, dest=tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and not list(tmp_path.glob(".restored*"))
    damaged.unlink()
    with pytest.raises(MissingObjectError, match="not in the store"):
        store.checkout("train", 1, dest=tmp_path / "restored")


def test_release_and_checkout_by_tag(store, folder, tmp_path):
    v1_files = snapshot(folder)
    store.commit(folder, message="v1", actor="alice")
    change(folder)
    store.commit(folder, message="v2", actor="alice")
    info = store.release("train", 1, tag="2026-q1", actor="dana")
    assert (info.status, info.release_tag) == ("released", "2026-q1")
    with pytest.raises(InputError, match="already names train v1"):
        store.release("train", 2, tag="2026-q1", actor="dana")
    with pytest.raises(InputError, match="not look like a version"):
        store.release("train", 2, tag="v7", actor="dana")
    assert snapshot(store.checkout("train", "2026-q1", dest=tmp_path / "q1")) == v1_files


def test_npz_dataset_commit_quarantine_rollback(store, tmp_path, digits_arrays):
    x, y = digits_arrays
    path = tmp_path / "digits.npz"
    np.savez(path, x=x[:IMAGES], y=y[:IMAGES])
    original = path.read_bytes()
    v1 = store.commit(path, message="arrays", actor="alice", name="digits")
    assert (v1.format, v1.sample_count) == ("npz", IMAGES)
    chosen = [e for e in store.manifest("digits").entries if e.location in ("x[3]", "x[250]")]
    v2 = store.quarantine("digits", [e.id for e in chosen], reason="outliers", actor="alice", approved=True)
    assert v2.sample_count == IMAGES - 2
    with np.load(path) as data:
        assert len(data["x"]) == IMAGES - 2 and np.array_equal(data["x"][3], x[4])
    with np.load(tmp_path / "home" / "quarantine" / "digits" / "v2" / "digits.npz") as removed:
        assert np.array_equal(removed["x"], x[[3, 250]]) and np.array_equal(removed["y"], y[[3, 250]])
    store.rollback("digits", 1, actor="alice")
    assert path.read_bytes() == original
    store.checkout("digits", 2, dest=tmp_path / "out")
    assert build_manifest(tmp_path / "out" / "digits.npz").merkle_root == v2.merkle_root


def test_csv_dataset_quarantine_removes_the_rows(store, tmp_path):
    path = tmp_path / "table.csv"
    rows = ["a,b,label"] + [f"{i},{i * 2},{'yes' if i % 2 else 'no'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    store.commit(path, message="table", actor="alice")
    chosen = [e for e in store.manifest("table").entries if e.location in ("row 1", "row 17")]
    store.quarantine("table", [e.id for e in chosen], reason="label noise", actor="alice", approved=True)
    lines = path.read_text().splitlines()
    assert lines[0] == "a,b,label" and len(lines) == 39 and "0,0,no" not in lines and "16,32,no" not in lines
    kept = (tmp_path / "home" / "quarantine" / "table" / "v2" / "table.csv").read_text().splitlines()
    assert kept == ["a,b,label", "0,0,no", "16,32,no"]


def test_parquet_dataset_quarantine_and_provenance_carried_over(store, tmp_path):
    import pandas as pd

    from bastion.data.manifest import Provenance

    path = tmp_path / "table.parquet"
    pd.DataFrame({"a": range(30), "b": [i / 4 for i in range(30)], "label": ["x", "y", "z"] * 10}).to_parquet(path)
    store.commit(path, message="table", actor="alice", provenance=Provenance(source="vendor-x", owner="data-team"))
    chosen = [e for e in store.manifest("table").entries if e.location == "row 5"]
    store.quarantine("table", [chosen[0].id], reason="outlier", actor="bob", approved=True)
    frame = pd.read_parquet(path)
    assert len(frame) == 29 and 4 not in frame["a"].tolist()
    assert pd.read_parquet(tmp_path / "home" / "quarantine" / "table" / "v2" / "table.parquet")["a"].tolist() == [4]
    provenance = store.manifest("table").provenance
    assert (provenance.source, provenance.owner, provenance.created_by) == ("vendor-x", "data-team", "bob")
    pd.DataFrame({"a": [1], "b": [0.5], "label": ["x"]}).to_parquet(path)
    store.commit(path, message="replaced", actor="carol")
    assert store.manifest("table").provenance.source == "vendor-x"  # inherited from the current version
    assert store.dataset_for_path(path).name == "table" and store.dataset_for_path(tmp_path) is None


# --- the command line -------------------------------------------------------------------------


def bastion(*args: str) -> object:
    return runner.invoke(app, ["data", *args])


def test_cli_commit_log_checkout_rollback_release(folder, tmp_path, monkeypatch):
    home = tmp_path / "state"
    monkeypatch.setenv("BASTION_USER", "erin")
    v1_files = snapshot(folder)
    result = bastion("commit", str(folder), "-m", "first cut", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "committed train v1: 300 samples" in result.output
    change(folder)
    result = bastion("commit", str(folder), "-m", "relabelled", "--as", "frank", "--home", str(home))
    assert result.exit_code == 0 and "parent v1" in result.output, result.output

    result = bastion("log", "--home", str(home))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "* v2" in text and "frank" in text and "erin" in text and "first cut" in text
    assert text.index("v2") < text.index("v1")  # newest first

    out = tmp_path / "v1-copy"
    result = bastion("checkout", "v1", "--out", str(out), "--home", str(home))
    assert result.exit_code == 0 and snapshot(out) == v1_files, result.output
    result = bastion("rollback", "1", "--home", str(home))
    assert result.exit_code == 0 and snapshot(folder) == v1_files, result.output
    result = bastion("release", "v1", "--tag", "golden", "--home", str(home))
    assert result.exit_code == 0 and "released train v1 as golden" in result.output

    result = bastion("ledger", "--home", str(home))
    assert result.exit_code == 0, result.output
    for action in ("dataset.commit", "dataset.rollback", "dataset.release"):
        assert action in result.output
    result = bastion("ledger", "--verify", "--home", str(home))
    assert result.exit_code == 0 and "ledger ok: 4 entries" in result.output, result.output

    result = bastion("checkout", "v7", "--home", str(home))
    assert result.exit_code == 2 and "has no version 'v7'" in result.output


def test_cli_ledger_verify_names_the_tampered_entry(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    assert bastion("commit", str(folder), "-m", "v1").exit_code == 0
    change(folder)
    assert bastion("commit", str(folder), "-m", "v2", "--as", "alice").exit_code == 0
    connection = sqlite3.connect(tmp_path / "state" / "bastion.db")
    with connection:
        connection.execute("UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 2")
    connection.close()
    result = bastion("ledger", "--verify")
    assert result.exit_code == 1
    assert "ledger tampered" in result.output and "entry 2" in result.output and "edited" in result.output


def test_cli_commit_of_a_malformed_dataset_is_a_clear_error(folder, tmp_path):
    (folder / "stray.txt").write_text("x")
    result = bastion("commit", str(folder), "-m", "v1", "--home", str(tmp_path / "state"))
    assert result.exit_code == 2 and "stray.txt" in result.output and "Traceback" not in result.output


def test_restore_never_touches_a_home_inside_the_dataset_and_keeps_hidden_entries(folder, tmp_path, monkeypatch):
    """A store at ./.bastion inside the dataset survives checkout/rollback --force; .git is left alone."""
    monkeypatch.delenv("BASTION_HOME", raising=False)
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    monkeypatch.chdir(folder)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert bastion("commit", ".", "-m", "v1").exit_code == 0
    change(folder)
    assert bastion("commit", ".", "-m", "v2").exit_code == 0
    home = folder / ".bastion"
    for args in (("checkout", "1", "--force"), ("rollback", "1", "--force"), ("checkout", "1", "--out", ".", "--force"),
                 ("checkout", "1", "--out", str(home / "objects"), "--force")):
        result = bastion(*args)
        assert result.exit_code == 2 and "bastion's own store" in result.output, (args, result.output)
        assert (home / "bastion.db").is_file() and (home / "ledger.head").is_file()
    assert bastion("ledger", "--verify").exit_code == 0

    # with the store elsewhere, hidden entries are neither compared nor deleted
    outside = tmp_path / "outside"
    with open_dataset_store(outside) as store:
        store.commit(folder, message="v1", name="digits")
        change(folder)
        store.commit(folder, message="v2", name="digits")
        (folder / ".DS_Store").write_bytes(b"finder")
        (folder / "3" / ".hidden-note").write_text("mine")
        store.rollback("digits", 1)  # hidden entries are not "uncommitted content": no --force needed
        assert (folder / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
        assert (folder / ".DS_Store").read_bytes() == b"finder"
        assert (folder / "3" / ".hidden-note").read_text() == "mine"
        assert (home / "bastion.db").is_file()
        store.checkout("digits", 2, force=True)
        assert (folder / ".git" / "HEAD").is_file() and (folder / ".DS_Store").is_file()


def test_version_rows_are_checked_against_the_ledger(store, folder, tmp_path):
    store.commit(folder, message="v1")
    change(folder)
    store.commit(folder, message="v2")
    store.release("train", 2, tag="2026-q1")
    database = tmp_path / "home" / "bastion.db"
    connection = sqlite3.connect(database)
    with connection:  # move the tag to v1
        connection.execute("UPDATE dataset_versions SET release_tag = NULL, status = 'committed' WHERE number = 2")
        connection.execute("UPDATE dataset_versions SET release_tag = '2026-q1', status = 'released' WHERE number = 1")
    connection.close()
    with pytest.raises(InputError, match="does not match the ledger"):
        store.checkout("train", "2026-q1", dest=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = bastion("ledger", "--verify", "--home", str(tmp_path / "home"))
    assert result.exit_code == 1 and "train v1" in result.output and "release_tag" in result.output, result.output

    connection = sqlite3.connect(database)
    with connection:  # put the tag back, then copy v1's objects into v2
        connection.execute("UPDATE dataset_versions SET release_tag = NULL, status = 'committed' WHERE number = 1")
        connection.execute("UPDATE dataset_versions SET release_tag = '2026-q1', status = 'released' WHERE number = 2")
        connection.execute("UPDATE dataset_versions SET (manifest_object, files_object, merkle_root) = (SELECT "
                           "manifest_object, files_object, merkle_root FROM dataset_versions WHERE number = 1) "
                           "WHERE number = 2")
    connection.close()
    for use in (lambda: store.checkout("train", "2026-q1", dest=tmp_path / "out"),
                lambda: store.rollback("train", 2), lambda: store.release("train", 2, tag="again"),
                lambda: store.version("train", 2) and store.checkout("train", 2, dest=tmp_path / "out2")):
        with pytest.raises(InputError, match="v2"):
            use()
    result = bastion("ledger", "--verify", "--home", str(tmp_path / "home"))
    assert result.exit_code == 1 and "train v2" in result.output and "merkle_root" in result.output


def test_reading_commands_create_nothing_and_name_the_missing_store(tmp_path, monkeypatch):
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    missing = tmp_path / "nowhere"
    for args in (("ledger",), ("ledger", "--verify"), ("log",), ("checkout", "1")):
        result = bastion(*args, "--home", str(missing))
        assert result.exit_code == 2 and "no bastion store at" in result.output, (args, result.output)
        assert "bastion data commit" in result.output
    assert not missing.exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args in (("ledger",), ("commit", str(tmp_path), "-m", "x")):
        result = bastion(*args, "--home", str(a_file))
        assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


def test_messages_say_what_to_do(store, folder, tmp_path):
    store.commit(folder, message="v1")
    change(folder)
    store.commit(folder, message="v2")
    (folder / "0" / "extra.png").write_bytes((folder / "1").iterdir().__next__().read_bytes())
    with pytest.raises(InputError) as error:
        store.rollback("train", 1)
    assert "--out" not in str(error.value).replace("checkout 1 --out", "") and "--force" in str(error.value)
    other = tmp_path / "other" / "second"
    shutil.copytree(folder.parent / "train", other)
    (other / "0" / "extra.png").unlink()
    store.commit(other, message="second")
    with pytest.raises(InputError, match="bastion data log NAME.*--name NAME"):
        store.log()


def test_reanchor_backwards_warns_that_entries_were_lost(folder, tmp_path):
    home = tmp_path / "state"
    assert bastion("commit", str(folder), "-m", "v1", "--home", str(home)).exit_code == 0
    change(folder)
    assert bastion("commit", str(folder), "-m", "v2", "--home", str(home)).exit_code == 0
    connection = sqlite3.connect(home / "bastion.db")
    with connection:
        connection.execute("DELETE FROM ledger_entries WHERE seq = 2")
    connection.close()
    result = bastion("ledger", "--reanchor", "--home", str(home))
    assert result.exit_code == 0 and "moved back from entry 2 to 1" in result.output
    assert "entries 2..2 were lost" in result.output


def test_a_damaged_ledger_anchor_refuses_a_commit_before_anything_is_stored(store, folder):
    store.commit(folder, message="v1", actor="alice")
    change(folder)
    before = state(store)
    anchor = store.database.home / "ledger.head"
    good = anchor.read_bytes()
    anchor.write_text("garbage")
    with pytest.raises(InputError, match="ledger head anchor .* is unreadable"):
        store.commit(folder, message="v2", actor="alice")
    anchor.write_bytes(good)
    assert state(store) == before


def test_an_anchor_that_cannot_be_written_after_a_commit_keeps_the_version_whole(store, folder, monkeypatch, tmp_path,
                                                                                  caplog):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "write_anchor", fail)
    version = store.commit(folder, message="v1", actor="alice")
    assert "could not be updated (disk full)" in caplog.text
    out = store.checkout("train", version.version, dest=tmp_path / "out")  # every object of the version is there
    assert snapshot(out) == snapshot(folder)


def test_checkout_never_replaces_or_nests_in_a_working_copy(store, folder):
    store.commit(folder, message="v1", actor="alice")
    notes = folder.parent / "notes.txt"
    notes.write_text("mine")
    before = snapshot(folder.parent)
    for dest, where in ((folder.parent, "holds the working copy"),
                        (folder / "3" / "new", "is inside the working copy")):
        with pytest.raises(InputError, match=f"it {where} of dataset 'train'"):
            store.checkout("train", 1, dest=dest, force=True)
    assert snapshot(folder.parent) == before


def test_csv_quarantine_moves_each_row_as_its_bytes(store, tmp_path):
    path = tmp_path / "crlf.csv"
    lines = ["\ufeffa,b,label\r\n"] + [f'{i},"x, {i}",{"yes" if i % 2 else "no"}\r\n' for i in range(20)]
    path.write_bytes("".join(lines).encode("utf-8"))  # as a spreadsheet writes it: BOM, CRLF, quoted commas
    store.commit(path, message="table", actor="alice")
    chosen = [e for e in store.manifest("crlf").entries if e.location == "row 3"]
    store.quarantine("crlf", [e.id for e in chosen], reason="label noise", actor="alice", approved=True)
    assert path.read_bytes() == "".join(lines[:3] + lines[4:]).encode("utf-8")
    kept = tmp_path / "home" / "quarantine" / "crlf" / "v2" / "crlf.csv"
    assert kept.read_bytes() == (lines[0] + lines[3]).encode("utf-8")


def test_a_deleted_ledger_anchor_fails_the_check_until_reanchored(store, folder, tmp_path):
    store.commit(folder, message="v1", actor="alice")
    (tmp_path / "home" / "ledger.head").unlink()
    home = str(tmp_path / "home")
    result = bastion("ledger", "--verify", "--home", home)
    assert result.exit_code == 1 and "ledger unanchored" in result.output and "--reanchor" in result.output
    assert bastion("ledger", "--reanchor", "--home", home).exit_code == 0
    assert bastion("ledger", "--verify", "--home", home).exit_code == 0


def test_an_edited_author_or_message_is_caught_by_the_ledger_check(store, folder, tmp_path):
    store.commit(folder, message="v1", actor="alice")
    database = tmp_path / "home" / "bastion.db"
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE dataset_versions SET author = 'mallory', message = 'approved by security'")
    connection.close()
    result = bastion("ledger", "--verify", "--home", str(tmp_path / "home"))
    assert result.exit_code == 1 and "author is 'mallory'" in result.output and "message" in result.output


def test_cli_ledger_verify_objects_names_each_missing_or_corrupt_file(folder, tmp_path, monkeypatch):
    """`data ledger --verify --objects` re-hashes every stored object a version uses, before any checkout needs it."""
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    assert bastion("commit", str(folder), "-m", "v1").exit_code == 0
    change(folder)
    assert bastion("commit", str(folder), "-m", "v2").exit_code == 0
    result = bastion("ledger", "--verify", "--objects")
    assert result.exit_code == 0 and "objects ok" in result.output, result.output

    with open_dataset_store(tmp_path / "state") as store:
        index = store.file_index(None, 1)
        objects = store.objects
    first, second = sorted(index.files.items())[:2]
    corrupted, removed = objects.path(first[1].object), objects.path(second[1].object)
    corrupted.write_bytes(corrupted.read_bytes() + b"\0")
    removed.unlink()
    result = bastion("ledger", "--verify", "--objects")
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"train v1's {first[0]}" in output and "corrupt" in output
    assert f"train v1's {second[0]}" in output and "is not in the store" in output
    assert "more file(s) of this or other versions" in output  # v2 holds the same bytes
    assert "ledger ok" in output and "2 stored object(s) damaged" in output  # the chain itself is intact

    def unreadable(self, digest):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ObjectStore, "check", unreadable)  # a failing disk or a permission: named, not a crash
    result = bastion("ledger", "--verify", "--objects")
    assert result.exit_code == 1 and "cannot be read: Permission denied" in " ".join(result.output.split())

    refused = bastion("ledger", "--objects")
    assert refused.exit_code == 2 and "--verify" in refused.output


def test_quarantine_keeps_a_linked_sample_as_bytes_and_undo_restores_the_link(store, folder, monkeypatch):
    """A sample that is a relative link inside the dataset is kept as the bytes it pointed to (the link, moved, would
    point nowhere); a quarantine that fails puts the link itself back."""
    os.symlink("../1/0001.png", folder / "0" / "linked.png")
    store.commit(folder, message="v1", actor="alice")
    entry = next(e for e in store.manifest("train").entries if e.location == "0/linked.png")
    expected = (folder / "1" / "0001.png").read_bytes()

    def broken_append(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset_store, "append_entry", broken_append)
    with pytest.raises(RuntimeError, match="disk full"):
        store.quarantine("train", [entry.id], reason="x", actor="alice", approved=True)
    link = folder / "0" / "linked.png"
    assert link.is_symlink() and os.readlink(link) == "../1/0001.png"
    monkeypatch.undo()

    store.quarantine("train", [entry.id], reason="suspected", actor="alice", approved=True)
    kept = store.quarantine_root / "train" / "v2" / "0" / "linked.png"
    assert not kept.is_symlink() and kept.read_bytes() == expected
    assert not os.path.lexists(link) and (folder / "1" / "0001.png").read_bytes() == expected


@pytest.mark.parametrize("link_name", ["zzz.png", "00-link.png"])
def test_quarantine_of_a_file_and_a_link_to_it_works_in_either_order(store, folder, link_name):
    """The link and its target share a sample id; every file is read before any is moved, whichever sorts first."""
    target = sorted((folder / "0").iterdir())[0]
    os.symlink(target.name, folder / "0" / link_name)
    expected = target.read_bytes()
    store.commit(folder, message="v1", actor="alice")
    entry = next(e for e in store.manifest("train").entries if e.location == f"0/{target.name}")
    v2 = store.quarantine("train", [entry.id], reason="duplicate", actor="alice", approved=True)
    kept = store.quarantine_root / "train" / "v2" / "0"
    assert (kept / target.name).read_bytes() == expected and (kept / link_name).read_bytes() == expected
    assert not os.path.lexists(target) and not os.path.lexists(folder / "0" / link_name)
    assert v2.sample_count == IMAGES - 1  # both entries of the id (file and link) left the IMAGES + 1


def test_quarantine_of_a_file_a_remaining_sample_links_to_says_why(store, folder):
    target = sorted((folder / "1").iterdir())[0]
    os.symlink(f"../1/{target.name}", folder / "2" / "linked-copy.png")
    store.commit(folder, message="v1", actor="alice")
    files = snapshot(folder)
    entry = next(e for e in store.manifest("train").entries if e.location == f"1/{target.name}")
    linked = next(e for e in store.manifest("train").entries if e.location == "2/linked-copy.png")
    if linked.id == entry.id:  # same bytes but another class: another id, so only the file is chosen
        pytest.skip("the link and its target share an id")
    with pytest.raises(InputError, match="may be a link to one of them"):
        store.quarantine("train", [entry.id], reason="x", actor="alice", approved=True)
    assert snapshot(folder) == files and (folder / "2" / "linked-copy.png").is_symlink()
