"""The inference routes' fast path: well-formed requests are answered without FastAPI's machinery, exactly as the
route would; everything else reaches the route itself."""

from __future__ import annotations

import json

import pytest

from bastion.gateway.app import create_app
from bastion.gateway.fastpath import well_formed
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.settings import GatewaySettings
from bastion.models.loading import load_classifier
from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key

INFER = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_weights):
    home = tmp_path_factory.mktemp("fastpath")
    loaded = load_classifier("bastion.models.zoo:digits_cnn", weights=digits_weights)
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=home, model_name="digits",
                               default_rate=None, default_budget=None, key_cache_seconds=0)
    with LiveServer(create_app(settings, loaded=loaded, policy=policy_from_dict(POLICY))) as live:
        live.key = make_key(home)[1]
        yield live


def _plain(x) -> dict:
    return infer_body(x)


def test_a_well_formed_request_is_answered_logged_and_counted_under_its_route(server, digits_arrays):
    x, _ = digits_arrays
    with server.client(server.key) as client:
        answer = client.post(INFER, json={**_plain(x[1500:1501]), "id": "mine", "parameters": {"a": 1}})
        versioned = client.post("/v2/models/digits/versions/1/infer", json=_plain(x[1501:1502]))
        metrics = client.get("/metrics").text
    assert answer.status_code == 200 and answer.json()["id"] == "mine"
    assert answer.headers["x-request-id"] == answer.json()["parameters"]["request_id"]
    assert answer.headers["content-type"] == "application/json"
    assert versioned.status_code in (200, 404)  # 404 when the served version is not "1": the route's own answer
    assert 'route="/v2/models/{name}/infer",status="200"' in metrics


@pytest.mark.parametrize(("change", "status", "code"), [
    (lambda body: {**body, "inputs": []}, 422, "invalid_request"),
    (lambda body: {**body, "id": "x" * 201}, 422, "invalid_request"),
    (lambda body: {**body, "inputs": [{**body["inputs"][0], "shape": [1, 1, 8, True]}]}, 422, "invalid_input"),
    (lambda body: {**body, "inputs": [{**body["inputs"][0], "shape": [1, 1, 8, 8.0]}]}, None, None),
    (lambda body: {**body, "inputs": [{**body["inputs"][0], "datatype": "FP64"}]}, 422, "invalid_input"),
    (lambda body: {**body, "inputs": [{**body["inputs"][0], "shape": [1, 1, 8, 7]}]}, 422, "invalid_input"),
])
def test_other_bodies_get_the_routes_own_answers(server, digits_arrays, change, status, code):
    x, _ = digits_arrays
    body = change(_plain(x[1502:1503]))
    with server.client(server.key) as client:
        answer = client.post(INFER, content=json.dumps(body), headers={"content-type": "application/json"})
    if status is None:  # the route's lax parsing takes 8.0 as 8 (and True as 1, above): the route answers
        assert answer.status_code == 200
        return
    assert answer.status_code == status and answer.json()["error"] == code


def test_broken_json_unknown_models_and_missing_keys_get_the_routes_answers(server, digits_arrays):
    x, _ = digits_arrays
    with server.client(server.key) as client:
        broken = client.post(INFER, content=b'{"inputs": [', headers={"content-type": "application/json"})
        other = client.post("/v2/models/other/infer", json=_plain(x[:1]))
    with server.client() as client:
        anonymous = client.post(INFER, json=_plain(x[:1]))
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    assert other.status_code == 404 and other.json()["error"] == "not_found"
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


def test_well_formed_takes_only_the_plain_form_of_the_schema():
    tensor = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]}
    client_id, parsed = well_formed(json.dumps({"id": "a", "inputs": [tensor]}).encode())
    assert client_id == "a" and parsed.shape == [1, 2] and parsed.data == [0.0, 1.0]
    for body in (b"[]", b"{", b'{"inputs": "x"}', json.dumps({"inputs": [tensor, tensor]}).encode(),
                 json.dumps({"inputs": [{**tensor, "name": 3}]}).encode(),
                 json.dumps({"inputs": [{**tensor, "shape": [1] * 9}]}).encode(),
                 json.dumps({"inputs": [tensor], "outputs": [{"name": 1}]}).encode(),
                 json.dumps({"inputs": [tensor], "parameters": []}).encode()):
        assert well_formed(body) is None, body
