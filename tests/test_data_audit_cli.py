"""``bastion data audit`` and ``bastion data quarantine`` as a user runs them: the record and report, the
selection, the move out of a committed dataset recorded in the ledger, and clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.data.sources import load_dataset
from bastion.workflows.audit import AuditRecord, read_audit

runner = CliRunner()
MODEL = "bastion.models.zoo:digits_cnn"


def bastion(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def text(result) -> str:
    return " ".join(result.output.replace("│", " ").split())


def write_digits(root: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"digit-{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(image[0] * 255).astype(np.uint8)).save(folder / names[i])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """300 digits as PNGs plus three extra copies of the first three (``copy-*.png``)."""
    root = tmp_path_factory.mktemp("audit") / "train"
    digits = load_dataset("digits:train")
    x, y = digits.x[:300], digits.y[:300]
    write_digits(root, x, y, [f"{i:04d}.png" for i in range(300)])
    write_digits(root, x[:3], y[:3], [f"copy-{i}.png" for i in range(3)])
    return root


@pytest.fixture
def workspace(pristine, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / ".bastion"))
    shutil.copytree(pristine, tmp_path / "train")
    return tmp_path


def test_audit_writes_the_record_and_report_and_names_the_copies(workspace, digits_weights):
    out = workspace / "audit"
    result = bastion("data", "audit", workspace / "train", "--model", MODEL, "--weights", digits_weights,
                     "--test", "digits:test", "--out", out)
    assert result.exit_code == 0, result.output
    record = read_audit(out)
    assert isinstance(record, AuditRecord) and len(record.ids) == 303
    names = {column.name for column in record.audits}
    assert {"exact-duplicates", "near-duplicates", "leakage", "outliers", "label-issues", "spectral-signatures",
            "activation-clustering", "poison-consensus"} <= names
    assert record.features.startswith("the model's penultimate")
    copies = {record.locations[i] for i in record.selection("duplicates")}
    assert len(copies) == 3 and all(Path(c).name.startswith(("copy-", "000")) for c in copies)
    html = (out / "audit.html").read_text()
    assert "bastion data quarantine" in html and "exact-duplicates" in html
    assert "exact-duplicates" in text(result)


def test_quarantine_lists_then_moves_the_selection_as_a_new_version(workspace, digits_weights):
    train, out = workspace / "train", workspace / "audit"
    assert bastion("data", "commit", train, "-m", "first export").exit_code == 0
    assert bastion("data", "audit", train, "--model", MODEL, "--weights", digits_weights, "--out", out,
                   "--checks", "duplicates").exit_code == 0
    files_before = sorted(p.relative_to(train) for p in train.rglob("*.png"))

    dry = bastion("data", "quarantine", out, "--select", "duplicates")
    assert dry.exit_code == 0 and "nothing moved" in text(dry)
    assert sorted(p.relative_to(train) for p in train.rglob("*.png")) == files_before

    moved = bastion("data", "quarantine", out, "--select", "duplicates", "--approve", "--as", "alice")
    assert moved.exit_code == 0, moved.output
    assert "new version v2" in text(moved)
    left = sorted(p.relative_to(train) for p in train.rglob("*.png"))
    assert len(left) == len(files_before) - 3
    log = bastion("data", "log")
    assert "alice" in text(log) and "v2" in text(log)
    verify = bastion("data", "ledger", "--verify")
    assert verify.exit_code == 0, verify.output


def test_quarantine_refuses_uncommitted_changed_or_unknown_input(workspace, digits_weights):
    train, out = workspace / "train", workspace / "audit"
    assert bastion("data", "audit", train, "--out", out, "--checks", "duplicates").exit_code == 0
    uncommitted = bastion("data", "quarantine", out, "--select", "duplicates", "--approve")
    assert uncommitted.exit_code == 2 and "no bastion store" in text(uncommitted)  # nothing committed yet

    bastion("data", "commit", train, "-m", "v1")
    next(train.rglob("0000.png")).unlink()  # the data changes after the audit ...
    bastion("data", "commit", train, "-m", "v2")
    changed = bastion("data", "quarantine", out, "--select", "duplicates", "--approve")
    assert changed.exit_code == 2 and "is not the data the audit saw" in text(changed)

    assert bastion("data", "quarantine", out, "--select", "everything").exit_code == 2
    missing = bastion("data", "quarantine", workspace / "nowhere")
    assert missing.exit_code == 2 and "no audit record" in text(missing)
    (out / "audit.json").write_text(json.dumps({"kind": "scan"}))
    assert "not a bastion audit record" in text(bastion("data", "quarantine", out))


def test_audit_without_a_model_reads_pixels_and_says_poison_was_skipped(workspace):
    out = workspace / "audit"
    result = bastion("data", "audit", workspace / "train", "--out", out, "--checks", "duplicates,poison")
    assert result.exit_code == 0, result.output
    record = read_audit(out)
    assert record.column("poison-consensus") is None
    assert any("poison" in note for note in record.notes) and "pixels" in record.features


@pytest.mark.parametrize(("args", "message"), [
    (["--checks", "everything"], "--checks takes names from"),
    (["--fp-budget", "1.5"], "fp_budget"),
    (["--checks", "poison"], "--checks poison needs --model"),
    (["--model", MODEL], "pass --weights"),
    (["--known-poison", "nowhere.poison.json"], "file not found"),
])
def test_audit_bad_options_exit_2(workspace, args, message):
    result = bastion("data", "audit", workspace / "train", "--out", workspace / "audit", *args)
    assert result.exit_code == 2 and message in text(result)


def test_a_failed_audit_leaves_no_new_folder_and_keeps_one_that_was_there(workspace):
    out = workspace / "reports" / "audit"
    result = bastion("data", "audit", workspace / "nowhere", "--out", out)
    assert result.exit_code == 2 and "nowhere" in text(result)
    assert not (workspace / "reports").exists(), "a failed run left its new --out folders behind"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert bastion("data", "audit", workspace / "nowhere", "--out", out).exit_code == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_poison_refuses_a_bad_target_and_leaves_nothing_behind(tmp_path):
    result = bastion("data", "poison", "digits:train", "--target", 99, "--out", tmp_path / "p")
    assert result.exit_code == 2 and "--target must be a class index from 0 to 9" in text(result)
    assert list(tmp_path.iterdir()) == []
    written = bastion("data", "poison", "digits:train", "--rate", 0.02, "--out", tmp_path / "p")
    assert written.exit_code == 0, written.output
    truth = json.loads((tmp_path / "p.poison.json").read_text())
    assert truth["attack"]["name"] == "badnets" and truth["poisoned_count"] == round(0.02 * truth["count"])
    assert all((tmp_path / "p" / entry["location"]).is_file() for entry in truth["poisoned"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "p.poison.json"]


@pytest.mark.slow
def test_backdoored_folder_is_found_quarantined_and_the_retrained_model_ignores_the_trigger(tmp_path, monkeypatch):
    """The whole user story on digits: poison, train, commit, audit, quarantine, retrain."""
    from bastion.attacks.poisoning import BadNets, attack_success_rate
    from bastion.models.loading import load_classifier

    monkeypatch.setenv("BASTION_HOME", str(tmp_path / ".bastion"))
    train, weights = tmp_path / "train", tmp_path / "w.safetensors"
    assert bastion("data", "poison", "digits:train", "--out", train, "--rate", 0.05).exit_code == 0
    truth = json.loads((tmp_path / "train.poison.json").read_text())
    assert truth["poisoned_count"] == 63
    assert bastion("train", "--model", MODEL, "--data", train, "--epochs", 15, "--out", weights).exit_code == 0
    assert bastion("data", "commit", train, "-m", "vendor export").exit_code == 0
    audit = bastion("data", "audit", train, "--model", MODEL, "--weights", weights, "--out", tmp_path / "a",
                    "--checks", "label-issues,poison", "--known-poison", tmp_path / "train.poison.json")
    assert audit.exit_code == 0, audit.output
    assert "known poison found" in text(audit)
    record = read_audit(tmp_path / "a")
    suspected = {record.locations[i] for i in record.selection("suspected")}
    truly = {entry["location"] for entry in truth["poisoned"]}
    assert len(suspected & truly) >= 0.9 * len(truly)
    assert len(suspected - truly) <= 0.02 * (truth["count"] - len(truly))
    assert bastion("data", "quarantine", tmp_path / "a", "--approve").exit_code == 0
    retrained = tmp_path / "w2.safetensors"
    assert bastion("train", "--model", MODEL, "--data", train, "--epochs", 15, "--out", retrained).exit_code == 0
    test = load_dataset("digits:test")
    asr = attack_success_rate(load_classifier(MODEL, weights=str(retrained)).classifier, test.x, test.y, BadNets(0))
    assert asr < 0.2


def test_duplicates_are_located_at_the_copy_and_hidden_files_are_not_samples(workspace):
    train = workspace / "train"
    shutil.copy(next(train.rglob("0005.png")), next(train.rglob("0005.png")).parent / ".hidden.png")
    out = workspace / "audit"
    result = bastion("data", "audit", train, "--checks", "duplicates", "--out", out)
    assert result.exit_code == 0, result.output
    record = read_audit(out)
    assert len(record.ids) == 303  # the hidden copy is neither loaded nor listed
    flagged = [record.locations[i] for i in record.selection("duplicates")]
    assert sorted(Path(location).name for location in flagged) == ["copy-0.png", "copy-1.png", "copy-2.png"]


def test_a_poison_audit_that_cannot_run_is_an_error_not_an_empty_result(workspace, digits_model):
    import torch

    scripted = workspace / "scripted.pt"
    torch.jit.script(digits_model.module).save(str(scripted))
    result = bastion("data", "audit", workspace / "train", "--model", scripted, "--input-shape", "1,8,8",
                     "--num-classes", "10", "--checks", "poison", "--out", workspace / "a")
    assert result.exit_code == 2 and "the poison audit cannot read --model" in text(result)
    assert bastion("data", "audit", workspace / "train", "--checks", "duplicates,poison",
                   "--out", workspace / "pixels").exit_code == 0
    skipped = bastion("data", "quarantine", workspace / "pixels", "--select", "suspected")
    assert skipped.exit_code == 2 and "has no poison-consensus results" in text(skipped)


def test_quarantine_without_a_store_does_not_create_one(workspace, monkeypatch):
    monkeypatch.delenv("BASTION_HOME")
    monkeypatch.chdir(workspace)
    assert bastion("data", "audit", workspace / "train", "--checks", "duplicates", "--out", "audit").exit_code == 0
    result = bastion("data", "quarantine", "audit", "--select", "duplicates", "--approve")
    assert result.exit_code == 2 and "no bastion store" in text(result)
    assert not (workspace / ".bastion").exists()


def test_poison_refuses_class_names_that_are_not_folder_names(tmp_path):
    source = tmp_path / "named.npz"
    np.savez(source, x=np.zeros((6, 1, 4, 4), dtype=np.float32), y=np.array([0, 1, 2] * 2),
             class_names=np.array(["../escaped", ".hidden", "ok"]))
    result = bastion("data", "poison", source, "--rate", 0, "--target", 2, "--out", tmp_path / "p")
    assert result.exit_code == 2 and "cannot be a folder name" in text(result), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named.npz"]
