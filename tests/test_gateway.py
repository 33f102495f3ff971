"""The gateway through the real HTTP stack (uvicorn on loopback): auth and roles on every route, the error
answers, limits, output policies, escalation to review and back, replay and the audit chain."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bastion.cli.main import app as cli
from bastion.gateway.app import create_app
from bastion.gateway.audit import AuditLog, PendingRecord, audit_anchor, verify_audit
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.replay import replay
from bastion.gateway.settings import GatewaySettings
from bastion.models.loading import load_classifier
from bastion.storage.database import open_database
from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key, uncertain_input

INFER = "/v2/models/digits/infer"


def _settings(home, **overrides) -> GatewaySettings:
    values = {"environment": "test", "secret_key": SECRET, "home": home, "model_name": "digits",
              "default_rate": None, "default_budget": None, "max_body_bytes": 200_000, "key_cache_seconds": 0}
    return GatewaySettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def loaded(digits_weights):
    return load_classifier("bastion.models.zoo:digits_cnn", weights=digits_weights)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, loaded):
    home = tmp_path_factory.mktemp("gateway")
    app = create_app(_settings(home), loaded=loaded, policy=policy_from_dict(POLICY))
    with LiveServer(app) as server:
        server.home = home
        server.keys = {role: make_key(home, role=role) for role in ("client", "reviewer", "admin")}
        yield server


@pytest.fixture(scope="module")
def clean(digits_arrays):
    x, _ = digits_arrays
    return x[1500:1510]


def _key(gateway, role: str) -> str:
    return gateway.keys[role][1]


def test_health_metadata_and_openapi_need_no_key(gateway):
    with gateway.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2").json()["name"] == "bastion"
        assert client.get("/v2/models/digits/ready").json()["ready"] is True
        assert "/v2/models/{name}/infer" in client.get("/openapi.json").json()["paths"]
        assert "bastion_gateway_requests" in client.get("/metrics").text


@pytest.mark.parametrize("headers, detail", [
    ({}, "needs an API key"),
    ({"Authorization": "Basic abc"}, "Bearer"),
    ({"Authorization": "Bearer bst_" + "x" * 43}, "not valid"),
    ({"Authorization": "Bearer nonsense"}, "not valid"),
])
def test_missing_or_wrong_keys_get_401(gateway, clean, headers, detail):
    with gateway.client() as client:
        answer = client.post(INFER, json=infer_body(clean[:1]), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated" and detail in answer.json()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", [INFER, "/v2/models/digits/versions/1/infer", "/predict"])
def test_the_key_is_checked_before_the_body(gateway, path):
    """The inference routes authenticate before they read the body: no key and a malformed body is a 401."""
    with gateway.client() as client:
        answer = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert answer.status_code == 401 and "needs an API key" in answer.json()["detail"]
        keyed = client.post(path, content=b"{not json", headers={"Content-Type": "application/json",
                                                                  "Authorization": f"Bearer {_key(gateway, 'client')}"})
        assert keyed.status_code == 422 and "not valid JSON" in keyed.json()["detail"]


def test_revoked_and_expired_keys_get_401(gateway, clean):
    key_id, revoked = make_key(gateway.home, name="to-revoke")
    expiring_id, expiring = make_key(gateway.home, name="expiring",
                                     expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    with gateway.client(_key(gateway, "admin")) as admin:
        assert [k["id"] for k in admin.get("/admin/keys").json() if k["name"] == "to-revoke"] == [key_id]
        assert admin.delete(f"/admin/keys/{key_id}").json()["revoked_at"] is not None
    with open_database(home=gateway.home) as database, database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE api_keys SET expires_at = ? WHERE id = ?",
                                   (datetime.now(timezone.utc) - timedelta(seconds=1), expiring_id))
    for key, detail in ((revoked, "revoked"), (expiring, "expired")):
        with gateway.client(key) as client:
            answer = client.post(INFER, json=infer_body(clean[:1]))
        assert answer.status_code == 401 and detail in answer.json()["detail"]


@pytest.mark.parametrize("method, path, allowed", [
    ("get", "/v2/reviews", {"reviewer", "admin"}),
    ("get", "/admin/keys", {"admin"}),
    ("get", "/admin/audit/verify", {"admin"}),
    ("delete", "/admin/keys/{key}/throttle", {"admin"}),
    ("get", "/v2/models/digits", {"client", "reviewer", "admin"}),
])
def test_roles_on_every_protected_route(gateway, method, path, allowed):
    path = path.format(key=make_key(gateway.home, name="throttled")[0])
    for role in ("client", "reviewer", "admin"):
        with gateway.client(_key(gateway, role)) as client:
            answer = getattr(client, method)(path)
        if role in allowed:
            assert answer.status_code == 200, (role, path, answer.text)
        else:
            assert answer.status_code == 403, (role, path)
            assert answer.json()["error"] == "forbidden" and role in answer.json()["detail"]
        with gateway.client() as anonymous:
            assert getattr(anonymous, method)(path).status_code == 401


def test_lifting_the_throttle_of_a_key_that_does_not_exist_is_404(gateway):
    with gateway.client(_key(gateway, "admin")) as admin:
        answer = admin.delete("/admin/keys/key_0000000000000000/throttle")
    assert answer.status_code == 404 and "no key 'key_0000000000000000'" in answer.json()["detail"]


def test_scopes_and_unknown_models(gateway, clean):
    _, scoped = make_key(gateway.home, scopes=["fraud-model"])
    with gateway.client(scoped) as client:
        answer = client.post(INFER, json=infer_body(clean[:1]))
        assert answer.status_code == 403 and "fraud-model" in answer.json()["detail"]
    with gateway.client(_key(gateway, "client")) as client:
        answer = client.post("/v2/models/nope/infer", json=infer_body(clean[:1]))
        assert answer.status_code == 404 and "'digits'" in answer.json()["detail"]
        assert client.get("/no/such/route").json()["error"] == "not_found"


def test_size_type_and_input_rules(gateway, clean):
    with gateway.client(_key(gateway, "client")) as client:
        big = client.post(INFER, content=b"{" + b" " * 300_000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        assert "BASTION_MAX_BODY_BYTES" in big.json()["detail"]
        text = client.post(INFER, content=b"hello", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415 and "application/json" in text.json()["detail"]
        cases = [
            (infer_body(clean[:1].reshape(1, 64)), "does not fit this model"),
            ({**infer_body(clean[:1]), "inputs": [{**infer_body(clean[:1])["inputs"][0], "datatype": "INT8"}]},
             "datatype"),
            (infer_body(clean[:1] * 3), "values must lie in [0.0, 1.0]"),
            ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 10}]},
             "needs 64"),
            ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ["a"] * 64}]},
             "list of numbers"),
            ({"inputs": []}, "inputs"),
            ({"nothing": 1}, "inputs"),
        ]
        for body, detail in cases:
            answer = client.post(INFER, json=body)
            assert answer.status_code == 422, body
            assert detail in answer.json()["detail"], answer.json()
        nan_body = b'{"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[' + b",".join(
            [b"NaN"] * 64) + b"]}]}"
        nan = client.post(INFER, content=nan_body, headers={"Content-Type": "application/json"})
        assert nan.status_code == 422 and "NaN" in nan.json()["detail"] and "not valid JSON" in nan.json()["detail"]
        broken = client.post(INFER, content=b'{"inputs": [', headers={"Content-Type": "application/json"})
        assert broken.status_code == 422 and broken.json()["detail"].startswith("the body is not valid JSON")


def test_rate_limit_and_budget_give_429(gateway, clean):
    _, limited = make_key(gateway.home, rate="3/minute")
    _, budgeted = make_key(gateway.home, budget="5/day")
    with gateway.client(limited) as client:
        codes = [client.post(INFER, json=infer_body(clean[:1])).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        answer = client.post(INFER, json=infer_body(clean[:1]))
        assert answer.json()["error"] == "rate_limited" and int(answer.headers["retry-after"]) >= 1
    with gateway.client(budgeted) as client:
        codes = [client.post(INFER, json=infer_body(clean[:2])).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # 4 of 5 spent; the refused request spent nothing
        assert client.post(INFER, json=infer_body(clean[:1])).status_code == 200
        assert "budget" in client.post(INFER, json=infer_body(clean[:1])).json()["detail"]


def test_answers_follow_the_model_and_the_output_policy(gateway, clean, loaded):
    import torch

    expected = loaded.classifier.predict(torch.from_numpy(clean)).tolist()
    with gateway.client(_key(gateway, "client")) as client:
        answer = client.post(INFER, json={**infer_body(clean), "id": "mine"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == expected and body["id"] == "mine"
    assert outputs["probabilities"]["shape"] == [10, 10]
    assert body["parameters"]["request_id"] == answer.headers["x-request-id"]
    for output, names in (("label", {"label"}), ("top-k", {"label", "probabilities"})):
        _, key = make_key(gateway.home, output=output)
        with gateway.client(key) as client:
            body = client.post(INFER, json=infer_body(clean)).json()
        assert {o["name"] for o in body["outputs"]} == names
        if output == "top-k":
            rows = np.array(body["outputs"][0]["data"]).reshape(10, 10)
            assert ((rows > 0).sum(axis=1) <= 3).all()
    with gateway.client(_key(gateway, "client")) as client:
        simple = client.post("/predict", json={"instances": clean.tolist()}).json()
    assert [p["label"] for p in simple["predictions"]] == expected


def test_escalation_to_review_and_back(gateway, digits_arrays, loaded):
    with gateway.client(_key(gateway, "client")) as client:
        answer = client.post(INFER, json=infer_body(uncertain_input(loaded, digits_arrays)))
        assert answer.status_code == 202, answer.text
        pending = answer.json()
        review_id = pending["review_id"]
        assert pending["status"] == "pending" and pending["review_url"] == f"/v2/reviews/{review_id}"
        assert client.get(pending["review_url"]).json()["status"] == "pending"
    _, other = make_key(gateway.home)
    with gateway.client(other) as client:
        assert client.get(f"/v2/reviews/{review_id}").status_code == 404
    with gateway.client(_key(gateway, "reviewer")) as reviewer:
        queue = reviewer.get("/v2/reviews").json()
        assert review_id in [case["review_id"] for case in queue]
        wrong = reviewer.post(f"/v2/reviews/{review_id}/decision", json={"action": "relabel", "labels": [42]})
        assert wrong.status_code == 422 and "0..9" in wrong.json()["detail"]
        none = reviewer.post(f"/v2/reviews/{review_id}/decision", json={"action": "relabel"})
        assert none.status_code == 422 and "none was given" in none.json()["detail"]
        assert review_id in [case["review_id"] for case in reviewer.get("/v2/reviews?status=all").json()]
        decided = reviewer.post(f"/v2/reviews/{review_id}/decision", json={"action": "relabel", "labels": [3],
                                                                             "note": "a blurred 3"})
        assert decided.status_code == 200 and decided.json()["status"] == "answered"
        again = reviewer.post(f"/v2/reviews/{review_id}/decision", json={"action": "approve"})
        assert again.status_code == 422 and "already decided" in again.json()["detail"]
    with gateway.client(_key(gateway, "client")) as client:
        result = client.get(f"/v2/reviews/{review_id}").json()
    assert result["status"] == "answered" and result["outputs"][0]["data"] == [3]
    listed = CliRunner().invoke(cli, ["review", "list", "--status", "all", "--home", str(gateway.home)])
    assert listed.exit_code == 0 and review_id in listed.output
    unknown = CliRunner().invoke(cli, ["review", "list", "--status", "bogus", "--home", str(gateway.home)])
    assert unknown.exit_code == 2 and "refused or all" in unknown.output


def test_replay_is_bit_for_bit(gateway, clean, loaded, digits_weights):
    with gateway.client(_key(gateway, "client")) as client:
        request_id = client.post(INFER, json=infer_body(clean[:4])).headers["x-request-id"]
    with open_database(home=gateway.home) as database, database.sessions() as session:
        result = replay(session, request_id, loaded=loaded)
    assert result.identical and result.checks == {"probabilities": True, "scores": True, "decision": True,
                                                  "outputs": True}
    run = CliRunner().invoke(cli, ["replay", request_id, "--model", "bastion.models.zoo:digits_cnn", "--weights",
                                   digits_weights, "--home", str(gateway.home)])
    assert run.exit_code == 0, run.output
    assert "DIFFERENT" not in run.output
    missing = CliRunner().invoke(cli, ["replay", "req_0", "--model", "bastion.models.zoo:digits_cnn", "--weights",
                                       digits_weights, "--home", str(gateway.home)])
    assert missing.exit_code == 2 and "no audit record" in missing.output


def test_audit_chain_detects_tampering(tmp_path, loaded, digits_arrays):
    x, _ = digits_arrays
    app = create_app(_settings(tmp_path), loaded=loaded, policy=policy_from_dict(POLICY))
    with LiveServer(app) as server:
        _, key = make_key(tmp_path)
        with server.client(key) as client:
            ids = [client.post(INFER, json=infer_body(x[i:i + 1])).headers["x-request-id"] for i in range(6)]
        # While the gateway runs, its newest records are past the anchor (rewritten at most once a second).
        with open_database(home=tmp_path) as database, database.sessions() as session:
            assert verify_audit(session, anchor=audit_anchor(database)).ok
    with open_database(home=tmp_path) as database, database.sessions() as session:
        check = verify_audit(session, anchor=audit_anchor(database))
        assert check.ok and check.checked == 6, check
    assert CliRunner().invoke(cli, ["audit", "verify", "--home", str(tmp_path)]).exit_code == 0
    with sqlite3.connect(tmp_path / "bastion.db") as connection:
        connection.execute("UPDATE audit_records SET decision = 'answer', response = '{}' WHERE request_id = ?",
                           (ids[2],))
    run = CliRunner().invoke(cli, ["audit", "verify", "--home", str(tmp_path)])
    assert run.exit_code == 1 and "record 3" in run.output
    with sqlite3.connect(tmp_path / "bastion.db") as connection:
        connection.execute("DELETE FROM audit_records WHERE seq >= 5")
    with open_database(home=tmp_path) as database, database.sessions() as session:
        problems = [p.problem for p in verify_audit(session, anchor=audit_anchor(database)).problems]
    assert any("cut off the end" in p for p in problems)


def test_audit_verify_of_a_moved_home_reads_the_anchor_from_the_old_place(tmp_path):
    home = tmp_path / "first"
    with open_database(home=home, create=True) as database:
        log = AuditLog(database)
        log.start()
        log.write([PendingRecord(request_id=f"req_{i}", key_id=None, model="m", model_version="1", model_sha256=None,
                                 policy_sha256="p" * 64, inputs=np.zeros((1, 2), np.float32), scores={},
                                 probabilities=None, response={}, decision="answer", status=200) for i in range(3)])
    home.rename(tmp_path / "moved")
    run = CliRunner().invoke(cli, ["audit", "verify", "--home", str(tmp_path / "moved")])
    assert run.exit_code == 0 and "chain and head anchor verified" in run.output and "old place" in run.output
    (tmp_path / "moved" / "audit.head").unlink()
    run = CliRunner().invoke(cli, ["audit", "verify", "--home", str(tmp_path / "moved")])
    assert run.exit_code == 0 and "chain verified (no anchor)" in run.output and "no head anchor" in run.output


def test_settings_refuse_default_secrets_outside_development(tmp_path):
    with pytest.raises(ValidationError, match="development default"):
        GatewaySettings(environment="production", home=tmp_path)
    with pytest.raises(ValidationError, match="at least 32"):
        GatewaySettings(environment="production", secret_key="short", home=tmp_path)
    assert GatewaySettings(home=tmp_path).environment == "development"


def test_throttle_counts_exactly_without_starting_threads():
    import threading
    import time

    from bastion.core.errors import ConfigError
    from bastion.gateway.keys import KeyInfo
    from bastion.gateway.throttle import Throttle

    key = KeyInfo(id="k", name="n", role="client", scopes=("*",), rate="3/second", budget="7/day", output=None,
                  expires_at=None, revoked=False)
    throttle = Throttle("memory://")
    threads = set(threading.enumerate())
    answers = [throttle.admit(key, 2) for _ in range(4)]
    assert answers[:3] == [None, None, None] and answers[3].scope == "key rate"
    time.sleep(1.05)
    refusal = throttle.admit(key, 2)  # 6 of 7 spent: 2 more is over the budget
    assert refusal is not None and refusal.scope == "key budget" and refusal.retry_after >= 1
    assert throttle.remaining_budget(key) == 1
    assert not set(threading.enumerate()) - threads  # no expiry timer thread per hit
    with pytest.raises(ConfigError, match="COUNT/PERIOD"):
        Throttle("memory://", global_rate="lots")
    with pytest.raises(ConfigError, match="rate limits"):
        Throttle("nosuch://host")


@pytest.mark.parametrize("policy, message", [
    ("detectors: [{kind: energy}]\n", "add `reference:`"),
    ("reference: digits:train\ndetectors: [{kind: nope}]\n", "unknown detector 'nope'"),
    ("decision: {flag_at: 3, review_at: 1}\n", "thresholds must grow"),
    ("reference: digits:train\nreference_limit: 5\n", "reference_limit"),
    ("input: [1, 2]\n", "input"),
    ("{not yaml", "not valid YAML"),
    ("memory_format: nhwc\n", "memory_format"),
])
def test_serve_refuses_a_bad_policy_with_what_to_fix(tmp_path, digits_weights, policy, message):
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    run = CliRunner().invoke(cli, ["serve", "--model", "bastion.models.zoo:digits_cnn", "--weights", digits_weights,
                                   "--policy", str(path), "--home", str(tmp_path)])
    assert run.exit_code == 2 and message in run.output, run.output


@pytest.mark.parametrize("variable, value, message", [
    ("BASTION_DEFAULT_RATE", "fast", "BASTION_DEFAULT_RATE='fast' is not a limit"),
    ("BASTION_DEFAULT_BUDGET", "5000", "BASTION_DEFAULT_BUDGET='5000' is not a limit"),
    ("BASTION_GLOBAL_RATE", "x", "BASTION_GLOBAL_RATE='x' is not a limit"),
    ("BASTION_DATABASE_URL", "bogus://x", "needs a driver that is not installed"),
    ("BASTION_GUARD_THRESHOLD", "2", "BASTION_GUARD_THRESHOLD: Input should be less than 1"),
    ("BASTION_ENVIRONMENT", "prod", "BASTION_ENVIRONMENT: Input should be"),
])
def test_serve_refuses_a_bad_setting_before_it_starts(tmp_path, digits_weights, monkeypatch, variable, value,
                                                     message):
    monkeypatch.setenv(variable, value)
    run = CliRunner().invoke(cli, ["serve", "--model", "bastion.models.zoo:digits_cnn", "--weights", digits_weights,
                                   "--home", str(tmp_path)])
    assert run.exit_code == 2 and message in run.output, run.output
    assert "serving" not in run.output


def test_serve_refuses_a_port_in_use(tmp_path, digits_weights):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = CliRunner().invoke(cli, ["serve", "--model", "bastion.models.zoo:digits_cnn", "--weights",
                                       digits_weights, "--home", str(tmp_path), "--port", str(port)])
    assert run.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in run.output, run.output
    assert "choose another port with --port" in run.output and "serving" not in run.output


def test_serve_refuses_the_default_secret_in_production(tmp_path, digits_weights, monkeypatch):
    monkeypatch.setenv("BASTION_ENVIRONMENT", "production")
    run = CliRunner().invoke(cli, ["serve", "--model", "bastion.models.zoo:digits_cnn", "--weights", digits_weights,
                                   "--home", str(tmp_path)])
    assert run.exit_code == 2 and "BASTION_SECRET_KEY is the development default" in run.output, run.output


def test_sanitising_is_the_bit_depth_defense(loaded, digits_arrays):
    import torch

    from bastion.defenses.preprocess import BitDepthReduction
    from bastion.gateway.pipeline import PolicyPipeline

    x = torch.from_numpy(digits_arrays[0][:50])
    pipeline = PolicyPipeline(loaded.classifier, policy_from_dict({"sanitise": {"bit_depth": 3}}))
    assert torch.equal(pipeline.sanitise(x), BitDepthReduction(3).fit(bounds=(0.0, 1.0)).transform(x))
    assert len(torch.unique(pipeline.sanitise(x))) <= 8


def test_channels_last_is_part_of_the_policy_and_only_for_torch_models_on_images(loaded, digits_arrays):
    import torch
    from torch import nn

    from bastion.core.errors import ConfigError
    from bastion.gateway.pipeline import PolicyPipeline
    from bastion.gateway.policy import Policy
    from bastion.models.torch_adapter import TorchClassifier

    assert "memory_format" not in Policy().document()  # the hash of every policy written before it is unchanged
    fast = policy_from_dict({"memory_format": "channels_last"})
    assert fast.sha256() != Policy().sha256()
    x = torch.from_numpy(digits_arrays[0][:16])
    plain, twin = PolicyPipeline(loaded.classifier, Policy()), PolicyPipeline(loaded.classifier, fast)
    assert plain.model is loaded.classifier and twin.model is not loaded.classifier  # the loaded model is untouched

    def last_conv(model):  # (64, 32, 3, 3): one input channel would be contiguous in both layouts
        return [m for m in model.module.modules() if isinstance(m, nn.Conv2d)][-1].weight

    assert last_conv(twin.model).is_contiguous(memory_format=torch.channels_last)
    assert not last_conv(loaded.classifier).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(twin.evaluate(x).probabilities, plain.evaluate(x).probabilities, atol=1e-5, rtol=0)
    tabular = TorchClassifier(nn.Linear(4, 3), (4,), 3)
    with pytest.raises(ConfigError, match="image inputs"):
        PolicyPipeline(tabular, fast)

    class Viewing(nn.Module):  # the classic `.view` after a convolution: it cannot run channels-last
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.head(self.conv(x).view(x.shape[0], -1))

    viewing = TorchClassifier(Viewing(), (1, 8, 8), 10)
    assert PolicyPipeline(viewing, Policy()).evaluate(x[:2]).probabilities.shape == (2, 10)
    with pytest.raises(ConfigError, match="does not run in channels-last layout"):
        PolicyPipeline(viewing, fast)


def test_serve_refuses_channels_last_for_a_model_that_cannot_run_it(tmp_path, monkeypatch):
    (tmp_path / "tabular_factory.py").write_text(
        "from bastion.models.zoo import tabular_mlp\n\ndef four_features():\n    return tabular_mlp(4, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "policy.yaml"
    path.write_text("memory_format: channels_last\n")
    run = CliRunner().invoke(cli, ["serve", "--model", "tabular_factory:four_features", "--policy", str(path),
                                   "--home", str(tmp_path / "home")])
    assert run.exit_code == 2 and "image inputs" in run.output, run.output


def test_keys_list_shows_whole_ids_in_a_narrow_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    made = CliRunner().invoke(cli, ["keys", "create", "--home", str(tmp_path), "--name", "a-rather-long-team-name",
                                    "--role", "client"])
    assert made.exit_code == 0, made.output
    key_id = make_key(tmp_path, name="second")[0]
    listed = CliRunner().invoke(cli, ["keys", "list", "--home", str(tmp_path)])
    assert listed.exit_code == 0 and key_id in listed.output, listed.output
