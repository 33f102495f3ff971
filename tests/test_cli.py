"""The command line as a user runs it: a real scan end to end, and clear errors for bad input."""

from __future__ import annotations

import json
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.records import ScanRecord
from bastion.scan.defense_record import DefenseScanRecord

runner = CliRunner()
MODEL = "bastion.models.zoo:digits_cnn"


@pytest.fixture
def weights(digits_weights) -> str:
    return digits_weights


def scan(*args: str) -> object:
    return runner.invoke(app, ["scan", "--model", MODEL, *args])


def test_scan_writes_every_report(weights, tmp_path):
    out = tmp_path / "report"
    result = scan("--weights", weights, "--data", "digits", "--limit", "60", "--suite", "quick",
                  "--eps", "0.1,0.2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "robust" in result.output and "fgsm" in result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    assert [r.eps for r in record.results] == [0.1, 0.2]
    assert record.headline.robust_accuracy < record.headline.clean_accuracy
    assert record.results[1].robust_accuracy <= record.headline.robust_accuracy
    assert len(record.headline.samples) == 60 and len(record.model.sha256) == 64
    assert {"fgsm", "pgd"} == {a.name for a in record.headline.attacks}
    assert json.loads((out / "scan.sarif").read_text())["version"] == "2.1.0"
    assert "<html" in (out / "scan.html").read_text().lower()
    assert ET.parse(out / "junit.xml").getroot().find(".//failure") is None


def test_scan_with_preprocess_reports_plain_and_adaptive_side_by_side(weights, tmp_path):
    out = tmp_path / "report"
    result = scan("--weights", weights, "--data", "digits", "--limit", "40", "--suite", "quick", "--eps", "0.15",
                  "--preprocess", "bits:4", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "plain vs adaptive (bpda)" in text and "This defense hides gradients" in text
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    defense = DefenseScanRecord.model_validate_json((out / "defense.json").read_text())
    row = defense.comparison[0]
    assert defense.defense.spec == "bits:4" and defense.defense.steps[0].params == {"bits": 4}
    assert record.headline.robust_accuracy == row.adaptive_robust_accuracy
    assert defense.plain.headline.robust_accuracy == row.plain_robust_accuracy > row.adaptive_robust_accuracy + 0.1
    assert "defense-hides-gradients" in {flag.check for flag in record.headline.flags}
    assert "bits:4" in record.model.description
    page = (out / "scan.html").read_text()
    assert "Defense: plain vs adaptive attacks" in page and "its plain robust accuracy is not real" in page
    masking = [r for r in json.loads((out / "scan.sarif").read_text())["runs"][0]["results"]
               if r["ruleId"] == "BASTION-GRADIENT-MASKING"]
    assert any("defense-hides-gradients" in r["message"]["text"] for r in masking)


def test_fail_under_fails_the_command_and_the_junit_test(weights, tmp_path):
    result = scan("--weights", weights, "--data", "digits", "--limit", "40", "--suite", "quick",
                  "--out", str(tmp_path), "--fail-under", "0.99")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output
    assert ET.parse(tmp_path / "junit.xml").getroot().find(".//failure") is not None


def _npz(tmp_path, x, y, name="data.npz") -> str:
    path = tmp_path / name
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--eps", "-0.1"], "eps must be a finite number >= 0"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--eps", "abc"], "comma-separated numbers"),
        (lambda tmp, w: ["--weights", w, "--data", str(tmp / "nope.npz")], "not found"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--suite", "huge"], "unknown suite"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--attacks", "pgd,magic"], "unknown attack 'magic'"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--attacks", ""],
         "--attacks is empty; give comma-separated names, e.g. --attacks fgsm,pgd"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--attacks", " , "], "--attacks is empty"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--fail-under", "60"], "robust accuracy in [0, 1]"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--batch-size", "0"], "batch size must be >= 1"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--limit", "0"], "limit must be a positive number"),
        (lambda tmp, w: ["--weights", str(tmp / "missing.safetensors"), "--data", "digits"], "missing.safetensors"),
        (lambda tmp, w: ["--weights", w, "--data",
                         _npz(tmp, np.zeros((4, 1, 9, 9), np.float32), np.zeros(4, np.int64))], "per-sample shape"),
        (lambda tmp, w: ["--weights", w, "--data",
                         _npz(tmp, np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 2, 12]))], "10 classes"),
        (lambda tmp, w: ["--weights", w, "--data",
                         _npz(tmp, np.full((4, 1, 8, 8), np.nan, np.float32), np.zeros(4, np.int64))], "NaN"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--preprocess", "sharpen:2"],
         "--preprocess: unknown preprocessing step 'sharpen'; valid steps: bits:N"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--preprocess", "bits:4,jpeg:0"],
         "JPEG quality must be an integer in 1..100, got 0"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--preprocess", "noise:0.1", "--eot-samples", "0"],
         "--eot-samples must be >= 1"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--eot-samples", "4"],
         "--eot-samples only applies to a defended scan; add --preprocess"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--bounds", "0,1e308"], "within float32's range"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--eps", "0.1,,0.2"], "comma-separated numbers"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--eps", "0.1,0.2,0.1"], "eps 0.1 is given twice"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--std", "nan"], "--std must be finite numbers"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--mean", "inf"], "--mean must be finite numbers"),
        (lambda tmp, w: ["--weights", w, "--data", "digits", "--num-classes", "5"],
         "declares num_classes=10 but num_classes=5 was passed"),
    ],
)
def test_bad_input_gets_a_clear_error(weights, tmp_path, make_args, message):
    result = scan(*make_args(tmp_path, weights), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "a failed scan left its new report folder behind"


def test_a_failed_scan_removes_only_the_empty_folders_it_made(tmp_path):
    missing = ["--data", str(tmp_path / "nope.npz")]
    nested = tmp_path / "new" / "deeper" / "out"
    assert scan(*missing, "--out", str(nested)).exit_code == 2
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert scan(*missing, "--out", str(existing)).exit_code == 2
    assert existing.is_dir()
    privacy = scan(*missing, "--suite", "privacy", "--train-data", "digits:train", "--out", str(tmp_path / "p"))
    assert privacy.exit_code == 2 and not (tmp_path / "p").exists()


def test_an_output_path_that_is_a_file_fails_before_the_scan(weights, tmp_path, monkeypatch):
    import bastion.scan.runner as runner_module  # the scan command imports run_scan from here when it runs

    def must_not_run(*args, **kwargs):
        raise AssertionError("the scan ran although its report could not be written")

    monkeypatch.setattr(runner_module, "run_scan", must_not_run)
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    result = scan("--weights", weights, "--data", "digits", "--out", str(taken))
    assert result.exit_code == 2 and "exists and is a file" in result.output
    assert taken.read_text() == "keep me"


def test_a_pickled_model_is_refused_without_being_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(Payload()))
    result = runner.invoke(app, ["scan", "--model", str(model), "--data", "digits", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "pickle" in result.output.lower() and "safetensors" in result.output
    assert not marker.exists()


def test_attacks_lists_every_registered_attack():
    result = runner.invoke(app, ["attacks"])
    assert result.exit_code == 0
    for name in ("fgsm", "pgd", "apgd-ce", "apgd-t", "cw-l2", "square", "hopskipjump"):
        assert name in result.output


def test_train_then_scan(tmp_path):
    weights = tmp_path / "m.safetensors"
    trained = runner.invoke(app, ["train", "--model", MODEL, "--data", "digits:train", "--limit", "300",
                                  "--epochs", "2", "--out", str(weights)])
    assert trained.exit_code == 0, trained.output
    assert weights.exists()
    bad = runner.invoke(app, ["train", "--model", MODEL, "--data", "digits:train", "--out", str(tmp_path / "m.pt")])
    assert bad.exit_code == 2 and ".safetensors" in bad.output
    no_epochs = runner.invoke(app, ["train", "--model", MODEL, "--data", "digits:train", "--epochs", "0",
                                    "--out", str(weights)])
    assert no_epochs.exit_code == 2 and "--epochs must be >= 1, got 0" in no_epochs.output


def train(out, *args: str) -> object:
    """``bastion train`` of the digits CNN on 64 digits for one epoch, writing ``out``."""
    return runner.invoke(app, ["train", "--model", MODEL, "--data", "digits:train", "--limit", "64", "--epochs", "1",
                               "--out", str(out), *args])


def test_train_with_the_same_seed_writes_the_same_weights(tmp_path):
    import torch

    def weights(name: str, seed: str) -> bytes:
        torch.manual_seed(len(list(tmp_path.iterdir())))  # another state of torch's generator, as in a new process
        result = train(tmp_path / name, "--seed", seed)
        assert result.exit_code == 0, result.output
        return (tmp_path / name).read_bytes()

    first = weights("a.safetensors", "0")
    assert weights("b.safetensors", "0") == first  # the model's initialisation follows the seed too
    assert weights("c.safetensors", "1") != first


def test_train_refuses_to_overwrite_the_weights_it_starts_from(weights, tmp_path):
    current = tmp_path / "cx" / "w.safetensors"
    current.parent.mkdir()
    current.write_bytes(Path(weights).read_bytes())
    result = train(tmp_path / "cx" / ".." / "cx" / "w.safetensors", "--weights", str(current))
    assert result.exit_code == 2
    assert "--weights" in result.output and "would overwrite the weights it starts from" in result.output
    assert current.read_bytes() == Path(weights).read_bytes()


@pytest.mark.parametrize("args, message", [
    (("--adversarial-eps", "-0.1"), "--adversarial-eps must be a finite number > 0"),
    (("--adversarial-eps", "0"), "--adversarial-eps must be a finite number > 0"),
    (("--resume",), "--resume continues from a checkpoint: pass the --checkpoint-dir"),
    (("--checkpoint-dir", "{tmp}/ck"), "already holds a training checkpoint: pass --resume to continue it"),
    (("--epochs", "0"), "--epochs must be >= 1, got 0"),
    (("--batch-size", "0"), "--batch-size must be >= 1, got 0"),
    (("--lr", "0"), "--lr must be a finite number > 0"),
    (("--dp-noise", "-1"), "--dp-noise must be a finite number > 0"),
    (("--dp-noise", "1", "--dp-delta", "2"), "--dp-delta must be in (0, 1)"),
    (("--dp-noise", "1", "--dp-epsilon", "2"), "give --dp-noise (the noise to add) or --dp-epsilon"),
    (("--mean", "0.1,0.2,0.3"), "--mean has 3 values; give 1 value or one per channel (1)"),
    (("--std", "0.1,0.2"), "--std has 2 values; give 1 value or one per channel (1)"),
    (("--bounds", "abc"), "--bounds must be comma-separated numbers, e.g. 0,1; got 'abc'"),
    (("--model", "{tmp}/emptydir"), "emptydir is a folder, not a model file"),
])
def test_train_rejects_bad_settings_naming_the_flag(tmp_path, args, message):
    from bastion.defenses.training.checkpoint import STATE_FILE

    (tmp_path / "emptydir").mkdir()
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / STATE_FILE).write_text("{}")
    out = tmp_path / "w.safetensors"
    result = train(out, *(arg.format(tmp=tmp_path) for arg in args))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_onnx_model_is_scanned_black_box(digits_model, tmp_path):
    import torch

    path = tmp_path / "digits.onnx"
    torch.onnx.export(digits_model.module.eval(), torch.zeros(1, 1, 8, 8), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", str(path), "--data", "digits", "--limit", "30",
                                 "--suite", "standard", "--eps", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    by_name = {a.name: a for a in record.headline.attacks}
    assert "needs white access; the model offers only scores" in by_name["apgd-ce"].skipped
    assert by_name["square"].skipped is None and by_name["square"].points_broken > 0
    assert record.model.kind == "onnx" and record.headline.robust_accuracy < record.headline.clean_accuracy


def test_skops_model_is_scanned_with_label_only_attacks(digits_arrays, tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    x, y = digits_arrays
    path = tmp_path / "logreg.skops"
    skops.io.dump(LogisticRegression(max_iter=300).fit(x[:1200].reshape(1200, -1), y[:1200]), path)
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", str(path), "--input-shape", "1,8,8", "--data", "digits",
                                 "--limit", "20", "--attacks", "square,hopskipjump", "--access", "labels",
                                 "--eps", "0.3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    square, hsj = record.headline.attacks
    assert "the threat model allows only labels" in square.skipped
    assert hsj.skipped is None and hsj.points_broken > 0


def test_the_default_suite_scans_a_tabular_model_with_hopskipjump_in_place_of_square(digits_arrays, tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    x, y = digits_arrays
    flat = x.reshape(len(x), -1)
    path = tmp_path / "logreg.skops"
    skops.io.dump(LogisticRegression(max_iter=300).fit(flat[:1200], y[:1200]), path)
    np.savez(tmp_path / "flat.npz", x=flat[1200:1210], y=y[1200:1210])
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", str(path), "--data", str(tmp_path / "flat.npz"), "--eps", "0.3",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    assert record.config.attacks == ["apgd-ce", "apgd-t", "hopskipjump"]
    assert record.headline.attacks[-1].skipped is None


def test_targeted_scan_reaches_random_targets(weights, tmp_path):
    result = scan("--weights", weights, "--data", "digits", "--limit", "40", "--suite", "quick", "--targeted",
                  "--eps", "0.3", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((tmp_path / "scan.json").read_text())
    assert record.config.targeted
    broken = [s for s in record.headline.samples if s.broken_by]
    assert broken and all(s.adversarial_prediction != s.label for s in broken)


def test_a_scan_in_which_no_attack_can_run_is_refused(weights, tmp_path):
    result = scan("--weights", weights, "--data", "digits", "--limit", "20", "--suite", "quick",
                  "--access", "labels", "--fail-under", "0.5", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "no attack of this scan can run" in " ".join(result.output.split())


def test_random_weights_are_flagged(tmp_path):
    result = scan("--data", "digits", "--limit", "60", "--suite", "quick", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((tmp_path / "scan.json").read_text())
    assert "chance-level-accuracy" in {flag.check for flag in record.headline.flags}


def test_a_parquet_table_is_scanned_with_its_schema(tmp_path):
    """--schema: a category column becomes features, every row is checked, and without it the table is refused."""
    import pandas as pd
    import skops.io
    from sklearn.linear_model import LogisticRegression

    from bastion.data.schema import load_schema
    from bastion.data.sources import load_dataset

    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 40)
    size = rng.uniform(0, 2, 40).round(3)
    kind = np.where((colour == "red") | (size > 1.2), "big", "small")
    table = tmp_path / "t.parquet"
    pd.DataFrame({"size": size, "colour": colour, "kind": kind}).to_parquet(table)
    schema = tmp_path / "schema.yaml"
    schema.write_text("label: kind\ncolumns:\n  size: {type: float, min: 0, max: 2}\n"
                      "  colour: {type: category, categories: [red, green, blue]}\n  kind: {type: category}\n")
    data = load_dataset(str(table), schema=load_schema(schema))
    model = tmp_path / "lr.skops"
    skops.io.dump(LogisticRegression().fit(data.x, data.y), model)
    args = ["scan", "--model", str(model), "--data", str(table), "--label-column", "kind", "--bounds", "0,2",
            "--attacks", "hopskipjump", "--limit", "10", "--eps", "0.3", "--out", str(tmp_path / "report")]

    result = runner.invoke(app, [*args, "--schema", str(schema)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((tmp_path / "report" / "scan.json").read_text())
    assert len(record.headline.samples) == 10 and record.model.kind == "sklearn"

    without = runner.invoke(app, [*args, "--out", str(tmp_path / "other")])
    assert without.exit_code == 2 and "colour" in without.output, without.output

    schema.write_text("label: kind\ncolumns:\n  size: {type: float, min: 0, max: 1}\n"
                      "  colour: {type: category, categories: [red, green, blue]}\n  kind: {type: category}\n")
    broken = runner.invoke(app, [*args, "--schema", str(schema), "--out", str(tmp_path / "third")])
    assert broken.exit_code == 2 and "is above the maximum 1" in " ".join(broken.output.split()), broken.output

    digits = runner.invoke(app, ["scan", "--model", str(model), "--data", "digits", "--schema", str(schema),
                                 "--out", str(tmp_path / "fourth")])
    assert digits.exit_code == 2 and "a schema applies to CSV and Parquet tables only" in digits.output


def test_the_cli_starts_without_torch_or_scipy():
    """Start-up imports only the command line: each command imports its machinery when it runs."""
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom bastion.cli.main import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "assert CliRunner().invoke(app, ['data', '--help']).exit_code == 0\n"
            "heavy = sorted(m for m in ('torch', 'scipy', 'sklearn', 'bastion.workflows', 'bastion.scan.runner',"
            " 'bastion.models.loading', 'bastion.attacks') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
