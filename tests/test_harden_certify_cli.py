"""``bastion harden`` and ``bastion certify`` as a user runs them, end to end on digits, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
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
    (("--method", "pgd", "--eval-suite", "bogus"), "unknown --eval-suite 'bogus'; choose one of quick"),
    (("--method", "pgd", "--fine-tune"), "--fine-tune starts from the model's current weights: pass them"),
    (("--method", "fast", "--steps", "3"), "--steps does not apply to --method fast; it goes with --method pgd "
                                           "or trades"),
    (("--method", "pgd", "--sigma", "0.5"), "--sigma does not apply to --method pgd; it goes with --method noise"),
    (("--method", "pgd", "--batch-size", "0"), "--batch-size must be >= 1"),
    (("--method", "pgd", "--patience", "0"), "--patience must be >= 1"),
    (("--method", "pgd", "--limit", "0"), "--limit must be a positive number of samples"),
    (("--method", "pgd", "--bounds", "1,0"), "--bounds must be LOW,HIGH with LOW below HIGH"),
])
def test_harden_rejects_bad_settings_with_a_clear_message(tmp_path, args, message):
    result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--out", str(tmp_path / "h"), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "h").exists()  # refused before any data is loaded or any folder made


def test_harden_refuses_to_overwrite_the_weights_it_is_given(weights, tmp_path):
    out = tmp_path / "mymodel"
    out.mkdir()
    current = out / "model.safetensors"
    current.write_bytes(Path(weights).read_bytes())
    result = invoke("harden", "--model", MODEL, "--weights", str(current), "--data", "digits:train", "--limit",
                    "100", "--method", "plain", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 2
    assert "so they would be overwritten: choose another --out" in " ".join(result.output.split())
    assert current.read_bytes() == Path(weights).read_bytes() and sorted(out.iterdir()) == [current]


def test_harden_with_the_same_seed_writes_the_same_weights(tmp_path):
    import torch

    def weights(name: str, seed: str) -> bytes:
        torch.manual_seed(len(list(tmp_path.iterdir())))  # another state of torch's generator, as in a new process
        result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--limit", "40", "--method", "pgd",
                        "--steps", "1", "--epochs", "1", "--batch-size", "32", "--no-early-stop", "--eval-limit", "4",
                        "--eval-suite", "quick", "--seed", seed, "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        return (tmp_path / name / "model.safetensors").read_bytes()

    first = weights("a", "0")
    assert weights("b", "0") == first  # the fresh model's initialisation follows the seed too
    assert weights("c", "1") != first


def test_harden_checks_the_evaluation_data_before_it_trains(tmp_path):
    x, _ = load_digits(return_X_y=True)
    wrong_labels = tmp_path / "wrong.npz"
    np.savez(wrong_labels, x=(x[:20] / 16.0).reshape(20, 1, 8, 8).astype(np.float32), y=np.arange(20, 40))
    out_of_range = tmp_path / "range.npz"
    np.savez(out_of_range, x=x[:20].reshape(20, 1, 8, 8).astype(np.float32), y=np.zeros(20, dtype=np.int64))
    for data, message in ((wrong_labels, "--eval-data has labels up to 39; the model has 10 classes"),
                          (out_of_range, "--eval-data ranges over [0, 16], outside the model's bounds [0, 1]")):
        out = tmp_path / data.stem
        result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--limit", "100", "--method", "pgd",
                        "--eval-data", str(data), "--bounds", "0,1", "--out", str(out))
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert not out.exists(), "a failed run left its new --out folder behind"


def test_certified_training_refuses_a_layer_the_bounds_cannot_pass_before_training(tmp_path, monkeypatch):
    (tmp_path / "tanh_models.py").write_text(
        "from torch import nn\n\n\ndef tanh_net():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "certified"
    result = invoke("harden", "--model", "tanh_models:tanh_net", "--data", "digits:train", "--limit", "100",
                    "--input-shape", "1,8,8", "--num-classes", "10", "--method", "ibp", "--out", str(out))
    assert result.exit_code == 2 and "Tanh" in result.output, result.output
    assert not out.exists(), "a failed run left its new --out folder behind"


def test_harden_noise_trains_at_the_sigma_given(tmp_path):
    out = tmp_path / "noise"
    result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--limit", "100", "--method", "noise",
                    "--sigma", "0.5", "--epochs", "1", "--no-early-stop", "--eval-limit", "5", "--eval-suite", "quick",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    record = HardenRecord.model_validate_json((out / "harden.json").read_text())
    assert record.training["method"] == "noise" and record.training["params"] == {"sigma": 0.5}


def test_harden_resume_without_checkpoints_says_it_starts_afresh(tmp_path):
    out = tmp_path / "fresh"
    result = invoke("harden", "--model", MODEL, "--data", "digits:train", "--limit", "100", "--method", "plain",
                    "--epochs", "1", "--no-early-stop", "--eval-limit", "5", "--eval-suite", "quick", "--resume",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "--resume found no checkpoints" in " ".join(result.output.split())


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
    # Each sample's radius is the curve radius itself (0.01 has no exact float32 form: a float32 radius fell
    # just under it, and the samples contradicted the headline).
    recounted = sum(s.radius >= record.config.radius and s.prediction == s.label for s in record.samples)
    assert record.certified_accuracy > 0 and recounted / len(record.samples) == record.certified_accuracy
    assert {s.radius for s in record.samples} <= {0.0, 0.005, 0.01}


@pytest.mark.parametrize("args, message", [
    (("--method", "crown"), "--eps is required"),
    (("--method", "smoothing", "--norm", "linf"), "smoothing certifies l2"),
    (("--method", "smoothing", "--sigma", "0"), "sigma"),
    (("--method", "smoothing", "--alpha", "2"), "alpha"),
    (("--method", "crown", "--eps", "-1"), "--eps must be a finite radius"),
    (("--method", "ibp", "--eps", "0.1", "--fail-under", "7"), "--fail-under"),
    (("--method", "ibp", "--eps", "0"), "--eps must be a finite radius > 0"),
    (("--method", "smoothing", "--eps", "0"), "--eps must be a finite radius > 0"),
    (("--method", "smoothing", "--n", "0"), "--n must be a number of noise samples >= 1"),
    (("--method", "smoothing", "--n0", "0"), "--n0 must be a number of noise samples >= 1"),
    (("--method", "smoothing", "--n", "9"), "--n 9 cannot certify anything at --alpha 0.001"),
    (("--method", "smoothing", "--n", "9"), "use --n 10 or more"),
    (("--method", "smoothing", "--limit", "0"), "--limit must be a positive number of samples"),
])
def test_certify_rejects_bad_settings_with_a_clear_message(weights, tmp_path, args, message):
    result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "4",
                    "--out", str(tmp_path / "c"), *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "c").exists()  # refused before any folder is made


@pytest.mark.parametrize("method", ["smoothing", "ibp"])
def test_certify_refuses_data_that_does_not_fit_the_model_before_certifying(weights, tmp_path, method):
    x, _ = load_digits(return_X_y=True)
    images = x[:10].reshape(10, 1, 8, 8).astype(np.float32)
    for name, arrays, message in (
            ("labels", {"x": images / 16.0, "y": np.arange(20, 30)}, "--data has labels up to 29"),
            ("range", {"x": images, "y": np.zeros(10, dtype=np.int64)}, "--data ranges over [0, 16], outside")):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", str(tmp_path / f"{name}.npz"),
                        "--method", method, "--eps", "0.1", "--n", "50", "--bounds", "0,1",
                        "--out", str(tmp_path / name))
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert not (tmp_path / name).exists(), "a failed run left its new --out folder behind"


def test_certify_warns_about_a_factory_model_without_weights(tmp_path):
    result = invoke("certify", "--model", MODEL, "--data", "digits", "--limit", "4", "--method", "ibp",
                    "--eps", "0.01", "--no-attack", "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    assert "starts from random weights" in " ".join(result.output.split())


def test_certify_smoothing_summary_separates_the_base_model_from_the_smoothed_one(weights, tmp_path):
    result = invoke("certify", "--model", MODEL, "--weights", weights, "--data", "digits", "--limit", "6",
                    "--method", "smoothing", "--n", "100", "--n0", "10", "--alpha", "0.01", "--batch-size", "120",
                    "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "base model without noise: clean" in text and "smoothed classifier: clean" in text
    assert "are the base model's, without noise" in (tmp_path / "s" / "certify.html").read_text()


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


def test_data_with_non_finite_values_is_refused_before_certifying(digits_model, digits_test):
    from bastion.core.errors import InputError
    from bastion.data.sources import Dataset
    from bastion.workflows.scan_common import check_in_bounds

    x, y = digits_test
    values = x[:4].numpy().copy()
    values[1, 0, 0, 0] = np.nan
    data = Dataset(x=values, y=y[:4].numpy(), class_names=[str(i) for i in range(10)], description="d")
    with pytest.raises(InputError, match="--data contains NaN or infinite values"):
        check_in_bounds(data, digits_model, "--data")
