"""``bastion scan --suite privacy`` and ``--suite extraction`` as a user runs them, on scikit-learn's digits.

A wide MLP is trained with ``bastion train`` on 200 digits (the members) until it memorises them, and
scanned: membership inference with 4 shadows, inversion and output defenses; then stolen with Knockoff
Nets under a 300-query budget, locally and through a live endpoint (the OIP v2 test server).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.workflows.output_defenses import OUTPUT_DEFENSES
from bastion.workflows.privacy_records import ExtractionScanRecord, PrivacyRecord

runner = CliRunner()
MEMBERS = 200
#: A module written next to the data and put on sys.path, so that ``--model MODULE:wide_mlp`` imports it.
MODULE = "bastion_privacy_scan_models"
FACTORY = f"{MODULE}:wide_mlp"
MODELS = '''
from torch import nn


def wide_mlp():
    """256 hidden units for 200 training digits: enough to memorise them."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    net.input_shape, net.num_classes = (1, 8, 8), 10
    return net
'''
SECRET = "s3cret-privacy-key-42"


def _text(result) -> str:
    """The command's output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """Members and non-members as .npz, and ``wide_mlp`` trained on the members by ``bastion train`` (80 epochs)."""
    folder = tmp_path_factory.mktemp("privacy-scan")
    (folder / f"{MODULE}.py").write_text(MODELS)
    sys.path.insert(0, str(folder))
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    members, non_members = folder / "members.npz", folder / "non_members.npz"
    np.savez(members, x=x[order[:MEMBERS]], y=y[order[:MEMBERS]])
    np.savez(non_members, x=x[order[MEMBERS : 2 * MEMBERS]], y=y[order[MEMBERS : 2 * MEMBERS]])
    weights = folder / "wide_mlp.safetensors"
    result = runner.invoke(app, ["train", "--model", FACTORY, "--data", str(members), "--epochs", "80",
                                 "--out", str(weights)])
    assert result.exit_code == 0, result.output
    yield SimpleNamespace(folder=folder, members=str(members), non_members=str(non_members), weights=str(weights))
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def test_privacy_suite_reports_membership_inversion_and_defenses(trained, tmp_path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", FACTORY, "--weights", trained.weights, "--suite", "privacy",
                                 "--data", trained.non_members, "--train-data", trained.members, "--shadows", "4",
                                 "--shadow-epochs", "80", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "TPR @ 1% FPR" in text and "label-only" in text and "empirical epsilon lower bound" in text

    record = PrivacyRecord.model_validate_json((out / "privacy.json").read_text())
    assert record.train_accuracy > record.test_accuracy  # it memorised its members
    assert [a.attack for a in record.attacks] == ["loss-threshold", "lira"]
    for attack in record.attacks:
        assert attack.auc > 0.5, attack.attack
        assert 0.0 <= attack.tpr_at_01pct <= attack.tpr_at_1pct <= 1.0
        assert attack.members == MEMBERS and attack.non_members == len(attack.scores) - MEMBERS
    lira = record.attack("lira")
    assert lira.params["shadows"] == 4 and record.shadow_model == FACTORY
    assert record.epsilon is not None and record.epsilon.epsilon >= 0 and record.epsilon_attack in ("loss-threshold",
                                                                                                     "lira")

    assert [row.defense for row in record.defenses] == list(OUTPUT_DEFENSES)
    rows = {row.defense: row for row in record.defenses}
    assert rows["none"].loss.auc == record.attack("loss-threshold").auc
    label_only = rows["label-only"]
    # Two-valued scores (correct or not) cannot find members at 1% FPR when most non-members are correct too.
    assert label_only.access == "labels" and label_only.loss.attack == "gap" and label_only.lira is None
    assert label_only.loss.tpr_at_1pct == 0.0
    assert all(row.lira is not None for row in record.defenses if row.access != "labels")
    assert all(row.cost.cost == 0.0 for row in record.defenses)  # no output defense changes a label
    assert rows["rounding-1"].cost.distortion > rows["rounding-2"].cost.distortion > 0

    inversion = record.inversion
    assert inversion.classes == list(range(10))
    images = np.asarray(inversion.reconstructions)
    assert images.shape == (10, 1, 8, 8) and images.min() >= 0.0 and images.max() <= 1.0
    assert min(inversion.confidences) > 0.5

    page = (out / "privacy.html").read_text()
    assert "log-log" in page and "Model inversion" in page and "label-only" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # the ROC curves and the reconstructions


def test_a_dp_trained_model_shows_its_accountants_epsilon_beside_the_bound(trained, tmp_path) -> None:
    weights = tmp_path / "dp.safetensors"
    result = runner.invoke(app, ["train", "--model", FACTORY, "--data", trained.members, "--epochs", "3",
                                 "--dp-noise", "1.0", "--out", str(weights)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", FACTORY, "--weights", str(weights), "--suite", "privacy",
                                 "--data", trained.non_members, "--train-data", trained.members, "--shadows", "2",
                                 "--shadow-epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = PrivacyRecord.model_validate_json((out / "privacy.json").read_text())
    assert record.accountant is not None and record.accountant.noise_multiplier == 1.0
    assert record.epsilon is not None and record.epsilon.delta == record.accountant.delta
    assert "DP accountant's epsilon" in _text(result)
    assert "its accountant" in (out / "privacy.html").read_text()


def test_a_damaged_dp_record_beside_the_weights_is_refused(trained, tmp_path) -> None:
    import shutil

    weights = tmp_path / "w.safetensors"
    shutil.copy(trained.weights, weights)
    weights.with_suffix(".privacy.json").write_text("{not json")
    result = runner.invoke(app, ["scan", "--model", FACTORY, "--weights", str(weights), "--suite", "privacy",
                                 "--data", trained.non_members, "--train-data", trained.members,
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 2, result.output
    assert "is not a DP training record" in _text(result) and "move it away" in _text(result)


def test_privacy_suite_without_a_trainable_factory_skips_lira_with_a_note(trained, tmp_path) -> None:
    import torch

    from bastion.models.loading import load_classifier

    module = load_classifier(FACTORY, weights=trained.weights).classifier.module.eval()
    scripted = tmp_path / "model.pt"
    torch.jit.trace(module, torch.zeros(1, 1, 8, 8)).save(str(scripted))
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", str(scripted), "--input-shape", "1,8,8", "--suite", "privacy",
                                 "--data", trained.non_members, "--train-data", trained.members, "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = PrivacyRecord.model_validate_json((out / "privacy.json").read_text())
    assert [a.attack for a in record.attacks] == ["loss-threshold"] and record.shadow_model is None
    assert any("LiRA was skipped" in note and "--shadow-model" in note for note in record.notes)
    assert all(row.lira is None for row in record.defenses)
    assert record.inversion is not None  # TorchScript is white-box


def test_extraction_suite_draws_a_rising_fidelity_curve_and_the_defense_table(trained, tmp_path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", "--model", FACTORY, "--weights", trained.weights, "--suite", "extraction",
                                 "--data", "digits", "--budget", "300", "--copy-epochs", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "knockoff adaptive" in _text(result) and "output defenses: fidelity of a copy" in _text(result)

    record = ExtractionScanRecord.model_validate_json((out / "extraction.json").read_text())
    assert record.copy_model == FACTORY  # the victim's own architecture by default
    assert record.pool.count + record.eval_data.count == 540 and "held out by sample id" in record.eval_source
    assert [run.name for run in record.runs] == ["knockoff random, probabilities", "knockoff random, labels",
                                                  "knockoff adaptive, probabilities", "knockoff adaptive, labels"]
    for run in record.runs:
        curve = run.record.curve
        assert [point.queries for point in curve] == [19, 38, 75, 150, 300]
        assert run.record.queries == 300 <= record.config.budget
        assert curve[-1].fidelity > curve[0].fidelity + 0.3, run.name  # more queries, a closer copy
        assert curve[-1].accuracy is not None
    assert record.best.record.fidelity > 0.8

    rows = {row.defense: row for row in record.defenses}
    assert list(rows) == list(OUTPUT_DEFENSES)
    assert rows["none"].fidelity == record.runs[0].record.fidelity
    assert rows["label-only"].targets == "labels" and rows["rounding-1"].targets == "probabilities"
    assert all(row.queries == 300 and row.cost.cost == 0.0 for row in rows.values())
    page = (out / "extraction.html").read_text()
    assert "Fidelity and copy accuracy against queries" in page and "label-only" in page


@contextlib.contextmanager
def _live_endpoint(weights: str):
    """The remote adapter tests' OIP v2 server on a free loopback port, serving ``FACTORY`` with ``weights``:
    yields ``(url, server)``."""
    try:
        from test_remote import Handler, Served, _Server  # the OIP v2 test server of the remote adapter's tests
    except ImportError as error:  # pragma: no cover - only when tests/ is not importable
        pytest.skip(f"the remote test server is not importable: {error}")
    import threading

    from bastion.models.loading import load_classifier

    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.served = Served(load_classifier(FACTORY, weights=weights).classifier, api_key=SECRET)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/digits", httpd
    finally:
        httpd.served.stop.set()
        httpd.shutdown()
        httpd.server_close()


def test_extraction_suite_against_a_live_endpoint(trained, tmp_path) -> None:
    out, journal = tmp_path / "report", tmp_path / "answers.jsonl"
    with _live_endpoint(trained.weights) as (url, httpd):
        result = runner.invoke(app, ["scan", "--endpoint", url, "--api-key", SECRET, "--suite", "extraction",
                                     "--data", "digits", "--budget", "100", "--copy-model", FACTORY,
                                     "--copy-epochs", "5", "--journal", str(journal), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = [(out / "extraction.json").read_text(), (out / "extraction.html").read_text(), journal.read_text()]
    assert SECRET not in result.output and not any(SECRET in text for text in files)
    assert all(seen == f"Bearer {SECRET}" for seen in httpd.served.keys_seen)

    record = ExtractionScanRecord.model_validate_json(files[0])
    assert record.model.kind == "remote" and record.model.sha256 is None
    assert len(record.runs) == 4 and all(run.record.queries == 100 for run in record.runs)
    assert [row.defense for row in record.defenses] == ["none"]
    assert any("remote endpoint" in note for note in record.notes)
    sent = record.endpoint["samples_sent"]
    assert sent == httpd.served.answered_samples <= 4 * 100 + record.eval_data.count
    assert record.endpoint["auth"]["api_key"] == "<redacted>"
    assert len(journal.read_text().splitlines()) == sent + 1  # the header, then one answer per sample sent


def test_an_evasion_scan_of_a_live_endpoint_records_what_it_sent(trained, tmp_path) -> None:
    from bastion.core.records import ScanRecord

    out = tmp_path / "report"
    with _live_endpoint(trained.weights) as (url, httpd):
        result = runner.invoke(app, ["scan", "--endpoint", url, "--api-key", SECRET, "--attacks", "square",
                                     "--data", "digits", "--limit", "5", "--eps", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    assert record.endpoint["samples_sent"] == httpd.served.answered_samples > 0
    assert record.endpoint["auth"]["api_key"] == "<redacted>" and SECRET not in (out / "scan.json").read_text()
    assert f"endpoint: {record.endpoint['samples_sent']:,} samples sent" in " ".join(result.output.split())


def _npz(folder: Path, name: str, shape: tuple[int, ...]) -> str:
    path = folder / name
    np.savez(path, x=np.zeros((4, *shape), np.float32), y=np.arange(4, dtype=np.int64))
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", FACTORY, "--suite", "privacy"], "--suite privacy needs --train-data"),
        (["--model", FACTORY, "--endpoint", "https://host/v2/models/m", "--suite", "extraction"],
         "pass either --model or --endpoint, not both"),
        (["--suite", "extraction"], "pass --model MODEL (a model file or pkg.module:factory) or --endpoint URL"),
        (["--suite", "privacy", "--train-data", "digits:train"], "pass --model MODEL"),
        (["--model", FACTORY, "--suite", "extraction", "--budget", "0"], "--budget must be a number of queries >= 1"),
        (["--model", FACTORY, "--suite", "extraction", "--budget", "-5"], "--budget must be a number of queries"),
        (["--endpoint", "model.onnx", "--suite", "extraction"], "--endpoint must be an http(s):// URL"),
        (["--model", FACTORY, "--suite", "extraction", "--api-key", "k"], "--api-key applies to a live model"),
        (["--model", FACTORY, "--suite", "privacy", "--train-data", "digits:train", "--budget", "10"],
         "--budget limits the queries of --suite extraction, or the samples sent to an --endpoint"),
        (["--model", FACTORY, "--suite", "extraction", "--train-data", "digits:train"],
         "--train-data applies to --suite privacy, not to --suite extraction"),
        (["--model", FACTORY, "--suite", "privacy", "--copy-model", FACTORY],
         "--copy-model applies to --suite extraction"),
        (["--model", FACTORY, "--suite", "privacy", "--train-data", "digits:train", "--attacks", "pgd"],
         "--attacks applies to the evasion suites"),
        (["--model", FACTORY, "--suite", "quick", "--shadows", "4"], "--shadows applies to --suite privacy"),
        (["--model", FACTORY, "--suite", "extraction", "--eps", "0.2"], "--eps applies to the evasion suites"),
        (["--model", FACTORY, "--suite", "privacy", "--train-data", "digits:train", "--shadows", "1"],
         "--shadows must be >= 2"),
        (["--model", FACTORY, "--suite", "extraction", "--copy-epochs", "0"], "--copy-epochs must be >= 1"),
    ],
)
def test_bad_input_gets_a_clear_error(trained, tmp_path, args, message) -> None:
    result = runner.invoke(app, ["scan", "--data", "digits", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in _text(result), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "privacy", "--train-data", "MEMBERS", "--shadow-model", "not a spec"],
         "--shadow-model must be pkg.module:factory"),
        (["--suite", "extraction", "--copy-model", "no_such_module_xyz:net"], "cannot import 'no_such_module_xyz'"),
        (["--suite", "extraction", "--copy-model", "bastion.models.zoo:fashion_small_cnn"],
         "fails on the model's inputs of shape (1, 8, 8)"),
        (["--suite", "privacy", "--train-data", "WRONG_SHAPE"], "per-sample shape"),
        (["--suite", "privacy", "--train-data", "MEMBERS", "--limit", "1"],
         "LiRA trains each shadow model on half of the members and non-members, and there are 2: give at least 4"),
    ],
)
def test_bad_factories_and_data_are_refused_before_any_training(trained, tmp_path, args, message) -> None:
    args = [trained.members if a == "MEMBERS" else _npz(tmp_path, "w.npz", (1, 9, 9)) if a == "WRONG_SHAPE" else a
            for a in args]
    result = runner.invoke(app, ["scan", "--model", FACTORY, "--weights", trained.weights, "--data",
                                 trained.non_members, *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in _text(result), result.output


def test_copy_models_default_to_the_zoo_by_input_shape() -> None:
    from bastion.core.errors import InputError
    from bastion.workflows.factories import check_factory, default_copy_model

    def model(shape: tuple[int, ...], classes: int = 10) -> SimpleNamespace:
        return SimpleNamespace(input_shape=shape, num_classes=classes)

    assert default_copy_model(model((1, 8, 8)))[0] == "bastion.models.zoo:digits_cnn"
    assert default_copy_model(model((1, 28, 28)))[0] == "bastion.models.zoo:fashion_small_cnn"
    name, factory = default_copy_model(model((30,), 2))
    assert name == "bastion.models.zoo:tabular_mlp(30, 2)"
    check_factory(factory, model((30,), 2), name)
    with pytest.raises(InputError, match="pass --copy-model pkg.module:factory"):
        default_copy_model(model((3, 32, 32)))


def test_the_held_out_split_is_fixed_by_sample_id_whatever_the_order() -> None:
    from bastion.data.sources import load_dataset
    from bastion.workflows.extraction import held_out_split

    data = load_dataset("digits")
    pool, held_out = held_out_split(data)
    shuffled_pool, shuffled_held_out = held_out_split(data.subset(np.random.default_rng(1).permutation(len(data))))
    assert set(held_out.sample_ids) == set(shuffled_held_out.sample_ids)
    assert not set(pool.sample_ids) & set(held_out.sample_ids) and len(pool) + len(held_out) == len(data)
    assert 0.1 < len(held_out) / len(data) < 0.3
    assert json.dumps(sorted(shuffled_pool.sample_ids)) == json.dumps(sorted(pool.sample_ids))
