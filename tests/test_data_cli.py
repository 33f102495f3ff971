"""``bastion data manifest|keygen|sign|verify|diff`` as a user runs them: exit codes, the differences
named by id and location, signatures, clear errors; and ids that follow a sample into a scan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.ids import stored_sample_id
from bastion.core.records import ScanRecord
from bastion.data.manifest import read_manifest
from bastion.data.sources import load_dataset

runner = CliRunner()


def data(*args: str):
    return runner.invoke(app, ["data", *map(str, args)])


def text(result) -> str:
    """The output with Rich's wrapping and table borders flattened, for substring checks."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """120 digits as 8x8 grey PNGs, ``digits/<digit>/<index>.png``."""
    root = tmp_path_factory.mktemp("pristine") / "digits"
    digits = load_dataset("digits")
    for i in range(120):
        folder = root / str(int(digits.y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(digits.x[i, 0] * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def train(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "train"))


@pytest.fixture
def signed(train, tmp_path) -> tuple[Path, Path, Path]:
    """``(dataset, manifest, public key)``: a manifest with provenance, signed."""
    manifest = tmp_path / "train.manifest.json"
    result = data("manifest", train, "--source", "vendor-x export 2026-10", "--owner", "data-team", "--collected",
                  "2026-10-05", "--transform", "grey", "--transform", "resize 8x8", "--out", manifest)
    assert result.exit_code == 0, result.output
    assert "120 samples in 10 classes" in text(result)
    keygen = data("keygen", "--out", tmp_path / "release.key")
    assert keygen.exit_code == 0, keygen.output
    sign = data("sign", manifest, "--key", tmp_path / "release.key", "--signer", "alice")
    assert sign.exit_code == 0 and "signed" in sign.output, sign.output
    return train, manifest, tmp_path / "release.pub"


def test_intact_signed_dataset_verifies_with_exit_0(signed):
    train, manifest, public = signed
    result = data("verify", train, manifest, "--public-key", public)
    assert result.exit_code == 0, result.output
    assert "intact" in text(result) and "signed by the trusted key" in text(result)
    stored = read_manifest(manifest)
    assert stored.provenance.transforms == ["grey", "resize 8x8"] and stored.provenance.collected == "2026-10-05"
    assert stored.signatures[0].signer == "alice"


def test_default_manifest_path_is_next_to_the_dataset(train):
    result = data("manifest", train)
    assert result.exit_code == 0, result.output
    assert read_manifest(train.with_name("train.manifest.json")).count == 120


def test_tampering_exits_1_and_names_each_sample_by_id_and_location(signed, tmp_path):
    train, manifest, public = signed
    victim = min((train / "3").iterdir())
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
    moved = min((train / "5").iterdir())
    moved.rename(train / "7" / moved.name)
    removed = min((train / "1").iterdir())
    removed.unlink()
    shutil.copy(min((train / "2").iterdir()), train / "2" / "new.png")
    report = tmp_path / "report.json"
    result = data("verify", train, manifest, "--public-key", public, "--report", report)
    assert result.exit_code == 1, result.output
    out = text(result)
    assert "DIFFERS" in out and "1 added, 1 removed, 1 changed, 1 relabelled" in out
    expected = {
        ("changed", f"3/{victim.name}", stored_sample_id(victim.read_bytes(), "3")),
        ("relabelled", f"7/{moved.name}", stored_sample_id((train / "7" / moved.name).read_bytes(), "7")),
        ("added", "2/new.png", stored_sample_id((train / "2" / "new.png").read_bytes(), "2")),
    }
    for kind, location, sample in expected:
        assert f"{kind} {location}" in out and sample[:16] in out
    old = {e.location: e.id for e in read_manifest(manifest).entries}
    assert f"removed 1/{removed.name}" in out and old[f"1/{removed.name}"][:16] in out
    assert "label 5 -> 7" in out
    full = json.loads(report.read_text())
    named = full["changed"] + full["relabelled"] + full["added"]
    assert {(c["kind"], c["location"], c["id"]) for c in named} == expected


def test_tampered_signature_and_wrong_key_exit_1(signed, tmp_path):
    train, manifest, public = signed
    data("keygen", "--out", tmp_path / "other.key")
    wrong = data("verify", train, manifest, "--public-key", tmp_path / "other.pub")
    assert wrong.exit_code == 1 and "no signature by the trusted key" in text(wrong)
    unpinned = data("verify", train, manifest)
    assert unpinned.exit_code == 0 and "valid but not pinned" in text(unpinned)
    document = json.loads(manifest.read_text())
    document["provenance"]["owner"] = "mallory"
    manifest.write_text(json.dumps(document))
    result = data("verify", train, manifest, "--public-key", public)
    assert result.exit_code == 1 and "INVALID signature" in text(result)
    assert "changed after it was signed" in text(result)


def test_tampered_manifest_entries_exit_1(signed):
    train, manifest, _ = signed
    document = json.loads(manifest.read_text())
    document["entries"][3]["size"] += 1
    manifest.write_text(json.dumps(document))
    result = data("verify", train, manifest)
    assert result.exit_code == 1 and "TAMPERED" in text(result) and "merkle_root" in text(result)


@pytest.mark.parametrize("problem, message", [
    ("malformed", "is not valid JSON"),
    ("no-dataset", "dataset not found"),
    ("no-manifest", "manifest not found"),
])
def test_bad_input_exits_2_with_a_clear_message(signed, problem, message):
    train, manifest, _ = signed
    if problem == "malformed":
        manifest.write_text("{ nope")
    elif problem == "no-dataset":
        train = train.with_name("missing")
    else:
        manifest = manifest.with_name("missing.json")
    result = data("verify", train, manifest)
    assert result.exit_code == 2, result.output
    assert message in text(result)


@pytest.mark.parametrize("stray, message", [
    ("4/notes.txt", "is not an image"),
    ("README", "is a file at the top of the image folder"),
    ("4/extra/001.png", "is a folder inside the class folder"),
    ("4/outside.png", "outside the dataset folder"),
    ("4/broken.png", "broken symbolic link"),
])
def test_a_stray_entry_is_a_difference_named_beside_the_others(signed, tmp_path, stray, message):
    """Something put into the dataset folder that the manifest cannot cover is a difference (exit 1), not a mistake
    in the command (exit 2): named with every other difference, in the terminal and in the report."""
    train, manifest, public = signed
    target = train / stray
    target.parent.mkdir(parents=True, exist_ok=True)
    if stray.endswith("outside.png"):
        target.symlink_to(tmp_path / "train.manifest.json")
    elif stray.endswith("broken.png"):
        target.symlink_to(train / "4" / "missing.png")
    else:
        target.write_bytes(b"x")
    changed = sorted((train / "3").iterdir())[0]
    changed.write_bytes((train / "2" / sorted(p.name for p in (train / "2").iterdir())[0]).read_bytes())
    report = tmp_path / "report.json"
    result = data("verify", train, manifest, "--public-key", public, "--report", report)
    assert result.exit_code == 1, result.output
    output = text(result)
    assert "DIFFERS" in output and message in output and "1 not a sample" in output
    assert f"3/{changed.name}" in output and "signatures:" in output  # the rest is still checked and shown
    saved = json.loads(report.read_text())
    assert len(saved["strays"]) == 1 and message in saved["strays"][0] and saved["changed"]


def test_every_stray_entry_is_named_and_a_wrong_folder_gets_a_hint(signed, tmp_path):
    train, manifest, _ = signed
    for name in ("a.txt", "b.txt"):
        (train / "4" / name).write_text("x")
    result = data("verify", train, manifest, "--show", "0")
    assert result.exit_code == 1 and "a.txt" in text(result) and "b.txt" in text(result)
    assert "2 not a sample" in text(result)

    parent = data("verify", train.parent, manifest)  # the folder above the dataset
    assert parent.exit_code == 1 and "none of the manifest's 120 samples is in" in text(parent)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([0, 1]))
    other = tmp_path / "d.manifest.json"
    assert data("manifest", npz, "--out", other).exit_code == 0
    wrong_format = data("verify", train, other)  # an npz manifest against a folder, stray file and all
    assert wrong_format.exit_code == 2 and "describes a npz dataset" in text(wrong_format)


def test_manifest_refuses_to_write_inside_the_dataset_and_keygen_to_overwrite(train, tmp_path):
    inside = data("manifest", train, "--out", train / "m.json")
    assert inside.exit_code == 2 and "inside the dataset folder" in text(inside)
    assert data("keygen", "--out", tmp_path / "k.key").exit_code == 0
    again = data("keygen", "--out", tmp_path / "k.key")
    assert again.exit_code == 2 and "already exists" in text(again)
    bad_date = data("manifest", train, "--out", tmp_path / "m.json", "--collected", "yesterday")
    assert bad_date.exit_code == 2 and "ISO date" in text(bad_date)


def test_diff_shows_changes_and_counts_by_class(train, tmp_path):
    assert data("manifest", train, "--out", tmp_path / "v1.json").exit_code == 0
    min((train / "6").iterdir()).rename(train / "0" / "was-six.png")
    min((train / "9").iterdir()).unlink()
    assert data("manifest", train, "--out", tmp_path / "v2.json").exit_code == 0
    result = data("diff", tmp_path / "v1.json", tmp_path / "v2.json")
    assert result.exit_code == 0, result.output
    out = text(result)
    assert "1 removed, 1 relabelled" in out and "relabelled 0/was-six.png" in out and "label 6 -> 0" in out
    counts = {line.split()[0]: line.split()[1:] for line in result.output.replace("│", " ").splitlines()
              if line.split() and line.split()[0] in {"0", "6", "9"} and len(line.split()) >= 3}
    assert counts["0"][-1] == "+1" and counts["6"][-1] == "-1" and counts["9"][-1] == "-1"
    same = data("diff", tmp_path / "v1.json", tmp_path / "v1.json")
    assert same.exit_code == 0 and "no differences" in text(same)


def test_schema_violations_via_the_cli(tmp_path):
    schema = "columns:\n  - {name: age, type: int, min: 0}\n  - {name: label, type: int}\n"
    (tmp_path / "schema.yaml").write_text(schema)
    (tmp_path / "t.csv").write_text("age,label\n3,1\n-2,0\nold,1\n")
    result = data("manifest", tmp_path / "t.csv", "--schema", tmp_path / "schema.yaml", "--out", tmp_path / "m.json")
    assert result.exit_code == 2
    out = text(result)
    assert "2 problem(s) in 2 row(s)" in out and "row 2, column 'age': '-2' is below the minimum 0" in out
    assert "row 3, column 'age': 'old' is not a number" in out


def test_a_bad_schema_names_the_column_not_its_index(tmp_path):
    (tmp_path / "t.csv").write_text("age,label\n3,1\n")
    (tmp_path / "list.yaml").write_text("columns:\n  - {name: label, type: int}\n  - {name: age, type: integr}\n"
                                        "  - {type: int}\n")
    (tmp_path / "map.json").write_text('{"columns": {"age": {"type": "int", "min": 5, "max": 1}, "label": 3}}')
    listed = text(data("manifest", tmp_path / "t.csv", "--schema", tmp_path / "list.yaml"))
    assert "column 'age': type: Input should be 'int'" in listed and "column #3: name: Field required" in listed
    assert "columns.1" not in listed
    mapped = text(data("manifest", tmp_path / "t.csv", "--schema", tmp_path / "map.json"))
    assert "column 'age': min 5 is above max 1;" in mapped and "column 'age': column" not in mapped
    assert "column 'label': Input should be a valid dictionary" in mapped


def test_scan_names_samples_by_their_manifest_ids(train, tmp_path, digits_weights):
    assert data("manifest", train, "--out", tmp_path / "m.json").exit_code == 0
    ids = {e.id for e in read_manifest(tmp_path / "m.json").entries}
    loaded = load_dataset(str(train), limit=25)
    result = runner.invoke(app, ["scan", "--model", "bastion.models.zoo:digits_cnn", "--weights", digits_weights,
                                 "--data", str(train), "--limit", "25", "--suite", "quick", "--eps", "0.1",
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((tmp_path / "report" / "scan.json").read_text())
    scanned = [s.sample_id for s in record.headline.samples]
    assert scanned == loaded.sample_ids and set(scanned) <= ids


def test_paths_a_user_gets_wrong_are_refused_cleanly(signed, tmp_path, monkeypatch):
    train, manifest, public = signed
    folder = data("manifest", train, "--out", tmp_path)
    assert folder.exit_code == 2 and "is a folder; name the manifest file" in text(folder)
    monkeypatch.chdir(train)
    here = data("manifest", ".")
    assert here.exit_code == 0, here.output
    assert (train.parent / "train.manifest.json").is_file()
    report = data("verify", train, manifest, "--report", tmp_path / "missing" / "r.json")
    assert report.exit_code == 2 and "give a file in an existing folder" in text(report)
    if Path("/proc/self").is_dir():  # Linux: /proc takes no new files, even from root
        unwritable = data("keygen", "--out", "/proc/bastion-test.key")
        assert unwritable.exit_code == 2 and "check the path and its permissions" in text(unwritable)
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 4), dtype=np.float32), y=np.zeros(0, dtype=np.int64))
    nothing = data("manifest", empty, "--out", tmp_path / "e.json")
    assert nothing.exit_code == 2 and "x holds no samples" in text(nothing)


def test_a_valid_dataset_with_a_broken_signature_is_not_called_intact(signed):
    train, manifest, public = signed
    document = json.loads(manifest.read_text())
    document["signatures"][0]["signature"] = document["signatures"][0]["signature"][::-1]
    manifest.write_text(json.dumps(document))
    result = data("verify", train, manifest, "--public-key", public)
    assert result.exit_code == 1 and "UNTRUSTED (the data matches, the signatures do not)" in text(result)
    assert "intact:" not in text(result)


def test_a_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    table = tmp_path / "excel.csv"
    table.write_bytes("\ufefflabel,a,b\r\n0,1,2\r\n1,3,4\r\n".encode())
    result = data("manifest", table, "--out", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    assert "2 samples in 2 classes" in text(result)
