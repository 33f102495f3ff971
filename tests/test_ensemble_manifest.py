"""Ensemble manifests: ``--model ensemble.yaml`` loads the members' average wherever a model is accepted."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.errors import InputError
from bastion.core.records import ScanRecord
from bastion.models.loading import load_classifier
from bastion.models.zoo import digits_cnn

DIGITS = "bastion.models.zoo:digits_cnn"


def _random_digits_weights(path, seed: int) -> str:
    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in digits_cnn().state_dict().items()}, str(path))
    return str(path)


@pytest.fixture
def members(tmp_path) -> list[str]:
    """Two digits_cnn weight files with different random weights, in ``tmp_path/members``."""
    folder = tmp_path / "members"
    folder.mkdir()
    return [_random_digits_weights(folder / f"m{i}.safetensors", seed=i) for i in range(2)]


def _manifest(tmp_path, body: str, name: str = "ensemble.yaml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def test_a_logit_manifest_averages_its_members_with_paths_relative_to_it(tmp_path, members):
    path = _manifest(tmp_path, f"""
ensemble:
  combine: logits
  members:
    - {{model: {DIGITS}, weights: members/m0.safetensors}}
    - {{model: {DIGITS}, weights: members/m1.safetensors, share: 3}}
""")
    loaded = load_classifier(str(path))
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    first, second = (load_classifier(DIGITS, weights=w).classifier for w in members)
    expected = 0.25 * first.logits(x) + 0.75 * second.logits(x)
    assert loaded.kind == "ensemble" and loaded.classifier.access == "white"
    assert torch.allclose(loaded.classifier.logits(x), expected, atol=1e-6)
    assert "members/m0.safetensors" in loaded.description and len(loaded.sha256) == 64


def test_the_digest_names_the_members_contents_not_their_paths(tmp_path, members):
    body = f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n" \
           f"    - {{model: {DIGITS}, weights: members/m1.safetensors}}\n"
    first = load_classifier(str(_manifest(tmp_path, body))).sha256
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "members", moved / "members")
    assert load_classifier(str(_manifest(moved, body))).sha256 == first
    _random_digits_weights(moved / "members" / "m1.safetensors", seed=5)
    assert load_classifier(str(_manifest(moved, body))).sha256 != first
    as_json = _manifest(tmp_path, json.dumps({"ensemble": {"members": [
        {"model": DIGITS, "weights": "members/m0.safetensors"},
        {"model": DIGITS, "weights": "members/m1.safetensors"}]}}), "ensemble.json")
    assert load_classifier(str(as_json)).sha256 == first


def test_a_member_without_a_file_leaves_the_digest_unknown(tmp_path, members):
    path = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}}}\n"
                               f"    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n")
    assert load_classifier(str(path)).sha256 is None


@pytest.mark.parametrize(("body", "message"), [
    ("ensemble: [", "not valid YAML at line 1"),
    ("members: []", "ensemble: Field required"),
    ("ensemble:\n  members: []", "members: List should have at least 1 item"),
    ("ensemble:\n  combine: median\n  members:\n    - {model: " + DIGITS + "}", "combine"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: -1}", "share: a share must be a finite number "
                                                                          "from 0 to 1,000,000 .*got -1.0"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: .nan}", r"ensemble.members.0.share: a share must "
                                                                            r"be a finite number from 0 .*got nan\)"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: .inf}", "a share must be a finite .*got inf"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: -.inf}", "a share must be a finite .*got -inf"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: 1.0e+308}", "to 1,000,000 .*got 1e[+]308"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: 1e7}", r"'1e7' was read as text, not a number: "
                                                                           r"in YAML write 10000000.0 \(a number"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: 2E22}", r"in YAML write 2.0e\+22 "),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: 1.5e3}", r"in YAML write 1500.0 "),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: true}", "share: Input should be a valid number"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: '2'}", "share: Input should be a valid number"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", weight: 2}", "weight: Extra inputs are not permitted"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", share: 0}", "every member has share 0; give at least"),
    ("ensemble:\n  members:\n    - {model: other.yaml}", r"member 0 \(other.yaml\) is an endpoint or a manifest"),
    ("ensemble:\n  members:\n    - {model: 'https://host/v2/models/m'}", "is an endpoint or a manifest"),
    ("ensemble:\n  members:\n    - {model: missing.onnx}", r"member 0 \(missing.onnx\): model file not found"),
    ("ensemble:\n  members:\n    - {model: " + DIGITS + ", weights: missing.safetensors}", "missing.safetensors"),
    ("ensemble:\n  members:\n    - {model: 'x',\n", "not valid YAML at line"),
    ("", "ensemble: Field required|Input should be a valid dictionary"),
])
def test_bad_manifests_say_what_to_fix(tmp_path, body, message):
    with pytest.raises(InputError, match=message):
        load_classifier(str(_manifest(tmp_path, body)))


def test_a_zero_share_leaves_a_member_out_and_numpy_inputs_are_taken(tmp_path, members):
    path = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n"
                               f"    - {{model: {DIGITS}, weights: members/m1.safetensors, share: 0}}\n")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ensemble, first = load_classifier(str(path)).classifier, load_classifier(DIGITS, weights=members[0]).classifier
    assert torch.equal(ensemble.predict(x.numpy()), first.predict(x))


def test_shares_of_an_infinite_sum_are_refused():
    from bastion.defenses.ensemble import EnsembleClassifier

    torch.manual_seed(0)
    member = load_classifier(DIGITS).classifier
    with pytest.raises(InputError, match="finite sum"):
        EnsembleClassifier([member, member], weights=[1e308, 1e308])


def test_a_linked_manifest_reads_paths_beside_its_real_file(tmp_path, members):
    real = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.yaml").symlink_to(real)
    assert load_classifier(str(elsewhere / "link.yaml")).sha256 == load_classifier(str(real)).sha256


def test_members_that_disagree_are_refused(tmp_path, members):
    path = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n"
                               "    - {model: bastion.models.zoo:fashion_cnn}\n")
    with pytest.raises(InputError, match="ensemble.yaml: ensemble member 1 has input_shape"):
        load_classifier(str(path))


def test_harden_and_the_registry_refuse_a_manifest_with_what_to_do(tmp_path, members):
    path = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: members/m0.safetensors}}\n")
    harden = CliRunner().invoke(app, ["harden", "--model", str(path), "--data", "digits:train", "--method", "pgd",
                                      "--epochs", "1", "--out", str(tmp_path / "hardened")])
    assert harden.exit_code == 2 and "Harden each member" in harden.output
    register = CliRunner().invoke(app, ["registry", "register", "--name", "ens", "--model", str(path),
                                        "--home", str(tmp_path / "home")])
    assert register.exit_code == 2 and "Register each member" in register.output


def test_a_factory_name_in_an_error_is_printed_as_written(tmp_path):
    result = CliRunner().invoke(app, ["scan", "--model", "nosuchmodule:five", "--data", "digits"])
    assert result.exit_code == 2 and "nosuchmodule:five" in result.output


def test_scan_accepts_a_manifest(tmp_path, digits_weights):
    shutil.copy(digits_weights, tmp_path / "a.safetensors")
    path = _manifest(tmp_path, f"ensemble:\n  combine: logits\n  members:\n"
                               f"    - {{model: {DIGITS}, weights: a.safetensors}}\n"
                               f"    - {{model: {DIGITS}, weights: {digits_weights}}}\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["scan", "--model", str(path), "--data", "digits", "--limit", "40",
                                      "--suite", "quick", "--eps", "0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = ScanRecord.model_validate_json((out / "scan.json").read_text())
    assert record.model.kind == "ensemble" and record.headline.clean_accuracy > 0.8


def test_the_gateway_serves_a_manifest_and_replays_it(tmp_path, digits_weights, digits_arrays):
    from bastion.gateway.app import create_app
    from bastion.gateway.policy import policy_from_dict
    from bastion.gateway.settings import GatewaySettings
    from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key

    shutil.copy(digits_weights, tmp_path / "a.safetensors")
    path = _manifest(tmp_path, f"ensemble:\n  members:\n    - {{model: {DIGITS}, weights: a.safetensors}}\n"
                               f"    - {{model: {DIGITS}, weights: {digits_weights}}}\n")
    home = tmp_path / "home"
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=home, model=str(path), model_name="digits")
    x, _ = digits_arrays
    with LiveServer(create_app(settings, policy=policy_from_dict(POLICY))) as server:
        _, key = make_key(home)
        with server.client(key) as client:
            answer = client.post("/v2/models/digits/infer", json=infer_body(x[1500:1502]))
            metadata = client.get("/v2/models/digits").json()
    assert answer.status_code == 200, answer.text
    assert metadata["platform"] == "bastion-ensemble" and len(metadata["parameters"]["sha256"]) == 64
    replayed = CliRunner().invoke(app, ["replay", answer.headers["x-request-id"], "--model", str(path),
                                        "--home", str(home)])
    assert replayed.exit_code == 0, replayed.output
    assert "DIFFERENT" not in replayed.output
