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
        version = client.get("/v2/models/digits").json()["versions"][0]
        versioned = client.post(f"/v2/models/digits/versions/{version}/infer", json=_plain(x[1501:1502]))
        other_version = client.post("/v2/models/digits/versions/no-such/infer", json=_plain(x[1501:1502]))
        metrics = client.get("/metrics").text
    assert answer.status_code == 200 and answer.json()["id"] == "mine"
    assert answer.headers["x-request-id"] == answer.json()["parameters"]["request_id"]
    assert answer.headers["content-type"] == "application/json"
    assert versioned.status_code == 200 and other_version.status_code == 404
    assert 'route="/v2/models/{name}/infer",status="200"' in metrics
    assert 'route="/v2/models/{name}/versions/{version}/infer",status="200"' in metrics


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


def test_the_bounds_are_the_schemas():
    from bastion.gateway import fastpath
    from bastion.gateway.schemas import InferInput, InferRequest, RequestedOutput

    def longest(model, name):
        return next(m.max_length for m in model.model_fields[name].metadata if hasattr(m, "max_length"))

    assert fastpath.MAX_ID == longest(InferRequest, "id") and fastpath.MAX_OUTPUTS == longest(InferRequest, "outputs")
    assert fastpath.MAX_NAME == longest(InferInput, "name") == longest(RequestedOutput, "name")
    assert fastpath.MAX_DATATYPE == longest(InferInput, "datatype")
    assert fastpath.MAX_DIMENSIONS == longest(InferInput, "shape")


def _limited_app(tmp_path, digits_weights):
    loaded = load_classifier("bastion.models.zoo:digits_cnn", weights=digits_weights)
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=tmp_path, model_name="digits",
                               default_rate=None, default_budget=None, key_cache_seconds=0, max_body_bytes=1000)
    return create_app(settings, loaded=loaded, policy=policy_from_dict(POLICY)), make_key(tmp_path)[1]


def _post_chunks(app, key: str, path: str, chunks: list[bytes], *, then_leave: bool = False,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[list[dict], object]:
    """POST ``chunks`` as one streamed body straight to the ASGI app; the messages it sent, and its metrics."""
    import asyncio

    async def post() -> tuple[list[dict], object]:
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode()),
                             *headers],
                 "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
                 "root_path": "", "asgi": {"version": "3.0"}, "state": {}}
        messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
        messages.append({"type": "http.disconnect"} if then_leave else {"type": "http.request", "body": b""})
        sent: list[dict] = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
            return sent, app.state.gateway.metrics

    return asyncio.run(post())


@pytest.mark.parametrize("path", [INFER, "/predict"])
def test_a_client_that_leaves_mid_body_and_a_streamed_body_over_the_limit(tmp_path, digits_weights, path):
    """The fast path's route and a FastAPI route alike: a client leaving mid-body gets the route's 400, a body
    streamed without Content-Length past the limit a 413 (FastAPI's own body reading used to make it a 400)."""
    app, key = _limited_app(tmp_path, digits_weights)
    left, _ = _post_chunks(app, key, path, [b'{"inputs": ['], then_leave=True)
    assert left[0]["status"] == 400  # nobody is left to read it, but the access log counts a 400, not a 500
    if path == INFER:
        assert b"client_disconnected" in left[1]["body"]
    large, metrics = _post_chunks(app, key, path, [b'{"inputs": [' + b" " * 600, b" " * 600])
    assert large[0]["status"] == 413 and json.loads(large[1]["body"])["error"] == "too_large"
    assert (b"connection", b"close") in large[0]["headers"]  # the rest of the body is never read
    from prometheus_client import generate_latest
    assert 'route="unmatched",status="413"' in generate_latest(metrics.registry).decode()  # as for Content-Length
    fits, _ = _post_chunks(app, key, path, [b'{"inputs": ', b"[]}"])  # streamed, within the limit
    assert fits[0]["status"] == 422


def test_a_chunked_body_is_counted_whatever_content_length_says_beside_it(tmp_path, digits_weights):
    """The server reads a chunked body to its last chunk even when a Content-Length is sent too (HTTP/1.1 lets
    Transfer-Encoding win), so the declared length must not excuse it from the count."""
    app, key = _limited_app(tmp_path, digits_weights)
    both = ((b"content-length", b"5"), (b"transfer-encoding", b"chunked"))
    large, _ = _post_chunks(app, key, "/predict", [b" " * 600, b" " * 600], headers=both)
    assert large[0]["status"] == 413 and json.loads(large[1]["body"])["error"] == "too_large"
    at_limit, _ = _post_chunks(app, key, "/predict", [b'{"instances": ' + b" " * 981, b"[[]]}"], headers=both)
    assert at_limit[0]["status"] == 422  # 1,000 bytes exactly: read, and refused by the route for its content


def test_request_ids_sort_by_the_time_they_were_made():
    """Time first, then 64 random bits: the audit log's request-id index grows at its end."""
    import re
    import time

    from bastion.gateway.inference import new_request_id

    first = new_request_id()
    time.sleep(0.002)
    ids = [first, *(new_request_id() for _ in range(200))]
    assert all(re.fullmatch(r"req_[0-9a-f]{28}", request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
    assert all(first < later for later in ids[1:])
    assert abs(int(first[4:16], 16) / 1000 - time.time()) < 60
