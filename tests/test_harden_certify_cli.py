"""``bastion harden`` and ``bastion certify`` as a user runs them, end to end on digits, and their errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.evidence import CertifyRecord, HardenRecord

runner = CliRunner()
MODEL = "bastion.models.zoo:digits_cnn"


@pytest.fixture
def weights(digits_weights) -> str:
    return digits_weights


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_harden_writes_weights_reports_and_a_before_after_record(weights, tmp_path):
    out = tmp_path / "hardened"
    result = invoke("harden", "--model", MODEL, "--weights", weights, "--data", "digits:train", "--limit", "400",
                    "--method", "fast", "--eps", "0.1", "--epochs", "2", "--eval-data", "digits",
                    "--eval-limit", "30", "--eval-suite", "quick", "--weight-average", "0.99", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = HardenRecord.model_validate_json((out / "harden.json").read_text())
    assert record.method == "fast" and record.training["epochs"] == 2 and record.training["weight_average"] == 0.99
    assert record.before is not None and record.cost.clean_accuracy_before == record.before.headline.clean_accuracy
    assert record.cost.robust_accuracy_after == record.after.headline.robust_accuracy
    assert record.cost.training_seconds > 0 and len(record.model_after.sha256) == 64
    for path in ("model.safetensors", "harden.html", "before/scan.json", "after/scan.html"):
        assert (out / path).is_file(), path
    assert "robust accuracy" in (out / "harden.html").read_text()
    assert "weights averaged (EMA, decay 0.99)" in (out / "harden.html").read_text()
    assert "on the validation split after each epoch (clean: its 40 samples" in (out / "harden.html").read_text()
    # The hardened weights load back into the factory and scan like any model.
    scan = invoke("scan", "--model", MODEL, "--weights", str(out / "model.safetensors"), "--data", "digits",
                  "--limit", "20", "--suite", "quick", "--out", str(tmp_path / "rescan"))
    assert scan.exit_code == 0, scan.output


def test_harden_resume_continues_from_the_last_checkpoint_and_refuses_a_changed_plan(tmp_path):
    out = tmp_path / "hardened"
    common = ("harden", "--model", MODEL, "--data", "digits:train", "--limit", "300", "--method", "pgd", "--steps",
              "2", "--epochs", "1", "--eval-limit", "10", "--eval-suite", "quick", "--no-early-stop", "--out", str(out))
    assert invoke(*common, "--eps", "0.1").exit_code == 0
    first = (out / "model.safetensors").read_bytes()
    result = invoke(*common, "--eps", "0.1", "--resume")
    assert result.exit_code == 0, result.output
    record = HardenRecord.model_validate_json((out / "harden.json").read_text())
    assert record.training["resumed_from"] == 1 and (out / "model.safetensors").read_bytes() == first
    changed = invoke(*common, "--eps", "0.2", "--resume")
    assert changed.exit_code == 2 and "eps" in changed.output
    afresh = invoke(*common, "--eps", "0.1")
    assert afresh.exit_code == 2 and "pass --resume" in " ".join(afresh.output.split())
    assert (out / "model.safetensors").read_bytes() == first


def test_harden_with_no_validation_split_trains_on_all_the_data(tmp_path):
    out = tmp_path / "all"
    result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--limit", "300", "--method", "pgd",
                    "--steps", "2", "--epochs", "1", "--val-fraction", "0", "--no-early-stop", "--eval-data", "digits",
                    "--eval-limit", "10", "--eval-suite", "quick", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = HardenRecord.model_validate_json((out / "harden.json").read_text())
    assert record.train_data.count == 300 and record.training["validation_samples"] is None
    assert record.eval_data.count == 10
    assert "trained on all 300 samples" in " ".join((out / "harden.html").read_text().split())


def test_harden_with_certified_training_certifies_the_result(tmp_path):
    out = tmp_path / "certified"
    result = invoke("harden", "--model", "bastion.models.zoo:digits_cnn", "--data", "digits:train", "--limit", "300",
                    "--method", "ibp", "--eps", "0.02", "--epochs", "2", "--no-early-stop", "--eval-limit", "20",
                    "--eval-suite", "quick", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = HardenRecord.model_validate_json((out / "harden.json").read_text())
    assert record.certified is not None and record.certified.config.method == "crown-ibp"
    assert record.cost.certified_accuracy_after == record.certified.certified_accuracy
    assert (out / "certify" / "certify.html").is_file()


@pytest.mark.parametrize("args, message", [
    (("--method", "magic"), "unknown --method"),
    (("--method", "pgd", "--eps", "0"), "--eps must be > 0"),
    (("--method", "pgd", "--val-fraction", "1.5"), "--val-fraction"),
    (("--method", "pgd", "--val-fraction", "-0.1"), "--val-fraction must be at least 0"),
    (("--method", "pgd", "--val-fraction", "0"), "add --no-early-stop and --eval-data"),
    (("--method", "pgd", "--val-fraction", "0", "--no-early-stop"), "for the before/after scans: add --eval-data"),
    (("--method", "pgd", "--val-fraction", "0", "--no-early-stop", "--eval-data", ""), "add --eval-data"),
    (("--method", "pgd", "--val-fraction", "0", "--eval-data", "digits"), "for the early stop: add --no-early-stop"),
    (("--method", "pgd", "--epochs", "0"), "epochs"),
    (("--method", "pgd", "--weight-average", "1.5"), "weight-average decay must be a number in (0, 1)"),
])
def test_harden_rejects_bad_settings_with_a_clear_message(tmp_path, args, message):
    result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--out", str(tmp_path / "h"), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "h").exists()  # refused before any data is loaded or any folder made


def test_certify_smoothing_writes_the_curve_and_per_sample_certificates(weights, tmp_path):
    out = tmp_path / "smooth"
    result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "12",
                    "--method", "smoothing", "--sigma", "0.25", "--n", "300", "--n0", "20", "--alpha", "0.01",
                    "--batch-size", "150", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = CertifyRecord.model_validate_json((out / "certify.json").read_text())
    assert record.config.norm == "l2" and record.config.radius == 0.25 and len(record.samples) == 12
    accuracies = [point.certified_accuracy for point in sorted(record.curve, key=lambda p: p.radius)]
    assert accuracies == sorted(accuracies, reverse=True)
    assert record.robust_accuracy is not None and record.certified_accuracy <= record.clean_accuracy
    assert all(s.forward_passes == 320 for s in record.samples)
    assert "certified accuracy" in (out / "certify.html").read_text()


def test_certify_sequential_spends_fewer_forward_passes(weights, tmp_path):
    common = ("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "10", "--method",
              "smoothing", "--n", "2000", "--n0", "20", "--radii", "0.1,0.25", "--no-attack")
    assert invoke(*common, "--sequential", "--out", str(tmp_path / "seq")).exit_code == 0
    record = CertifyRecord.model_validate_json((tmp_path / "seq" / "certify.json").read_text())
    assert record.config.sequential and record.mean_forward_passes < 2020


def test_certify_bounds_on_a_cnn(weights, tmp_path):
    out = tmp_path / "crown"
    result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "10",
                    "--method", "crown-ibp", "--eps", "0.01", "--radii", "0.005,0.01", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = CertifyRecord.model_validate_json((out / "certify.json").read_text())
    assert record.config.norm == "linf" and [p.radius for p in record.curve] == [0.0, 0.005, 0.01]
    assert record.certified_accuracy <= record.robust_accuracy <= record.clean_accuracy


@pytest.mark.parametrize("args, message", [
    (("--method", "crown"), "--eps is required"),
    (("--method", "smoothing", "--norm", "linf"), "smoothing certifies l2"),
    (("--method", "smoothing", "--sigma", "0"), "sigma"),
    (("--method", "smoothing", "--alpha", "2"), "alpha"),
    (("--method", "crown", "--eps", "-1"), "--eps must be a finite radius"),
    (("--method", "ibp", "--eps", "0.1", "--fail-under", "7"), "--fail-under"),
])
def test_certify_rejects_bad_settings_with_a_clear_message(weights, tmp_path, args, message):
    result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "4",
                    "--out", str(tmp_path / "c"), *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_certify_bounds_refuse_a_model_without_layers(digits_model, digits_test):
    from bastion.core.errors import CapabilityError
    from bastion.data.sources import Dataset
    from bastion.models.base import QueryCounter
    from bastion.models.loading import LoadedModel
    from bastion.workflows.certify import CertifySettings, run_certify

    x, y = digits_test
    opaque = LoadedModel(classifier=QueryCounter(digits_model), description="opaque", sha256=None, kind="remote")
    data = Dataset(x=x[:4].numpy(), y=y[:4].numpy(), class_names=[str(i) for i in range(10)], description="d")
    with pytest.raises(CapabilityError, match="Use --method smoothing"):
        run_certify(opaque, data, CertifySettings(method="crown", eps=0.1))
