"""The remote classifier against a real local HTTP server (Open Inference Protocol v2) serving the digits CNN.

The server runs in a background thread and can be told to misbehave: rate limiting (429 with
``Retry-After``), server errors, hanging past the client's read timeout, malformed answers, a required
API key, labels-only or probability outputs. Retries wait a millisecond here; nothing asserts on time.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import torch

from bastion.attacks.evasion import HopSkipJump, Square
from bastion.attacks.extraction import CopyTraining, KnockoffNets, QueryBudgetExceeded
from bastion.core.errors import InputError, RemoteError
from bastion.core.threat import ThreatModel
from bastion.models import RemoteClassifier, RetryPolicy, load_classifier
from bastion.models.remote_protocol import parse_endpoint
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn

SECRET = "s3cret-token-0123"
FAST = RetryPolicy(max_retries=3, backoff_base=0.001, backoff_max=0.002)


# --- the server --------------------------------------------------------------------------------------


@dataclass
class Served:
    """What the server serves and how it misbehaves; counters of what it saw."""

    model: TorchClassifier
    output: str = "logits"  # "logits", "probabilities" or "labels"
    output_name: str = "scores"
    api_key: str | None = None
    key_header: str = "Authorization"
    faults: deque = field(default_factory=deque)  # applied to the next /infer requests, one each
    fail_after: int | None = None  # answer this many /infer requests, then 500 for ever
    infer_requests: int = 0  # every POST to /infer, failed or not
    answered_requests: int = 0
    answered_samples: int = 0
    metadata_requests: int = 0
    keys_seen: list[str | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metadata(self) -> dict[str, Any]:
        labels = self.output == "labels"
        return {"name": "digits", "versions": ["1"], "platform": "pytorch",
                "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
                "outputs": [{"name": self.output_name, "datatype": "INT64" if labels else "FP32",
                             "shape": [-1] if labels else [-1, 10]}]}

    def answer(self, x: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            logits = self.model.logits(x)
        if self.output == "labels":
            return {"name": self.output_name, "datatype": "INT64", "shape": [len(x)],
                    "data": logits.argmax(1).tolist()}
        scores = torch.softmax(logits, 1) if self.output == "probabilities" else logits
        return {"name": self.output_name, "datatype": "FP32", "shape": [len(x), 10],
                "data": scores.reshape(-1).tolist()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        served = self.server.served
        if not self._authorised(served):
            return
        if self.path != "/v2/models/digits":
            return self._json(404, {"error": f"no model at {self.path}"})
        with served.lock:
            served.metadata_requests += 1
        self._json(200, served.metadata())

    def do_POST(self) -> None:
        served = self.server.served
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self._authorised(served):
            return
        if self.path != "/v2/models/digits/infer":
            return self._json(404, {"error": f"no model at {self.path}"})
        with served.lock:
            served.infer_requests += 1
            fault = served.faults.popleft() if served.faults else None
            broken = served.fail_after is not None and served.answered_requests >= served.fail_after
        if broken:
            return self._json(500, {"error": "model worker crashed"})
        request = json.loads(body)["inputs"][0]
        if request["name"] != "pixels" or request["datatype"] != "FP32" or request["shape"][1:] != [1, 8, 8]:
            return self._json(400, {"error": f"bad input {request['name']} {request['shape']}"})
        x = torch.tensor(request["data"], dtype=torch.float32).reshape(request["shape"])
        if fault is not None and self._fault(fault, served, x):
            return
        output = served.answer(x)
        with served.lock:
            served.answered_requests += 1
            served.answered_samples += len(x)
        self._json(200, {"model_name": "digits", "outputs": [output]})

    def _fault(self, fault: tuple, served: Served, x: torch.Tensor) -> bool:
        """Misbehave as ``fault`` says; ``True`` when the answer has been sent (or abandoned)."""
        kind, *args = fault
        if kind == "status":
            status, headers = args
            self._json(status, {"error": "try again later"}, headers)
        elif kind == "hang":  # past the client's read timeout; ends early when the test is over
            served.stop.wait(5.0)
            self._json(200, {"outputs": [served.answer(x)]})
        elif kind == "not json":
            self._send(200, b"<html>upstream gateway says hello</html>", "text/html")
        else:
            output = served.answer(x)
            if kind == "nan":
                output["data"][3] = float("nan")
            elif kind == "short data":
                output["data"] = output["data"][:-1]
            elif kind == "wrong batch":
                output["shape"][0] -= 1
                output["data"] = output["data"][: output["shape"][0] * 10]
            elif kind == "wrong classes":
                output["shape"] = [len(x), 5]
                output["data"] = output["data"][: len(x) * 5]
            elif kind == "strings":
                output["data"] = [str(v) for v in output["data"]]
            self._json(200, {"outputs": [output]})
        return True

    def _authorised(self, served: Served) -> bool:
        if served.api_key is None:
            return True
        sent = self.headers.get(served.key_header)
        served.keys_seen.append(sent)
        expected = f"Bearer {served.api_key}" if served.key_header == "Authorization" else served.api_key
        if sent == expected:
            return True
        # A careless server that echoes what it got: the client must not repeat it.
        self._json(401, {"error": f"unauthorised: got {served.key_header}={sent}"})
        return False

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (a timeout test)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    served: Served

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hung up: not a failure
        pass


@pytest.fixture
def server(digits_model):
    """A running endpoint serving ``digits_model`` at ``server.url``; ``server.served`` steers it."""
    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.served = Served(digits_model)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/digits"  # type: ignore[attr-defined]
    yield httpd
    httpd.served.stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def digits_points(digits_model, digits_test) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out digits the model classifies correctly."""
    x, y = digits_test
    correct = digits_model.predict(x) == y
    return x[correct], y[correct]


def _client(server, **kwargs: Any) -> RemoteClassifier:
    kwargs.setdefault("retry", FAST)
    return RemoteClassifier(server.url, **kwargs)


# --- faithful answers ----------------------------------------------------------------------------------


def test_scores_equal_the_served_model_and_big_inputs_are_batched(server, digits_model, digits_test) -> None:
    x, _ = digits_test
    with _client(server, batch_size=64) as remote:
        assert (remote.input_shape, remote.num_classes, remote.access) == ((1, 8, 8), 10, "scores")
        assert remote.input_name == "pixels" and remote.kind == "remote"
        scores = remote.logits(x[:150])
        assert remote.score_kind == "logits" and not scores.requires_grad
        torch.testing.assert_close(scores, digits_model.logits(x[:150]).detach(), rtol=0, atol=1e-5)
        assert torch.equal(remote.predict(x[:150]), digits_model.predict(x[:150]))
        assert server.served.infer_requests == 3 and remote.used == 150  # 64 + 64 + 22; the repeat came from memory
        assert remote.served_from_cache == 150


def test_numpy_inputs_are_taken_like_tensors(server, digits_model, digits_test) -> None:
    x = digits_test[0][:10]
    with _client(server) as remote:
        assert torch.equal(remote.predict(x.double().numpy()), digits_model.predict(x))
        assert remote.logits(x.numpy()).dtype == torch.float32 and remote.used == 10
        with pytest.raises(TypeError, match="predict takes inputs .* got builtins.list"):
            remote.predict(x.tolist())
        assert remote.used == 10


def test_probabilities_are_recognised_and_turned_into_log_probabilities(server, digits_model, digits_test) -> None:
    server.served.output = "probabilities"
    x, _ = digits_test
    with _client(server) as remote:
        assert remote.score_kind == "auto"  # the output's name says nothing: the first answer decides
        scores = remote.logits(x[:20])
        assert remote.score_kind == "probabilities" and remote.get_params()["score_kind"] == "probabilities"
        probabilities = torch.softmax(digits_model.logits(x[:20]).detach(), 1)
        torch.testing.assert_close(scores, probabilities.clamp_min(1e-12).log(), rtol=0, atol=1e-4)
        assert torch.equal(scores.argmax(1), probabilities.argmax(1))
    server.served.output_name = "probabilities"
    with _client(server) as named:
        assert named.score_kind == "probabilities"  # from the metadata, before any query


def test_labels_only_endpoint_gives_labels_access(server, digits_model, digits_test) -> None:
    server.served.output, server.served.output_name = "labels", "label"
    with pytest.raises(InputError, match="num_classes"):
        _client(server)
    x, _ = digits_test
    with _client(server, num_classes=10) as remote:
        assert remote.access == "labels" and remote.score_kind == "labels"
        one_hot = remote.logits(x[:40])
        assert torch.equal(one_hot.sum(1), torch.ones(40))
        assert torch.equal(remote.predict(x[:40]), digits_model.predict(x[:40]))
    with pytest.raises(InputError, match="access='labels'"):
        _client(server, num_classes=10, access="scores")


def test_scores_endpoint_read_as_labels_only(server, digits_model, digits_test) -> None:
    x, _ = digits_test
    with _client(server, access="labels") as remote:
        one_hot = remote.logits(x[:30])
        assert remote.access == "labels" and set(one_hot.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(one_hot.argmax(1), digits_model.predict(x[:30]))


# --- faults that retrying fixes ------------------------------------------------------------------------

RETRIED = {
    "429 with Retry-After 0": [("status", 429, {"Retry-After": "0"})] * 2,
    "429 without Retry-After": [("status", 429, {})],
    "500 twice": [("status", 500, {})] * 2,
    "502 then 503": [("status", 502, {}), ("status", 503, {"Retry-After": "0"})],
    "hang past the read timeout": [("hang",)],
}


@pytest.mark.parametrize("faults", RETRIED.values(), ids=RETRIED.keys())
def test_transient_failures_are_retried_and_counted_once(server, digits_model, digits_test, faults) -> None:
    x, _ = digits_test
    server.served.faults.extend(faults)
    with _client(server, batch_size=25, timeout=0.3, budget=50) as remote:
        scores = remote.logits(x[:50])
        torch.testing.assert_close(scores, digits_model.logits(x[:50]).detach(), rtol=0, atol=1e-5)
        assert server.served.infer_requests == 2 + len(faults)  # two batches, one extra request per fault
        assert remote.used == 50 and remote.remaining == 0  # a retried batch is paid for once


def test_every_kth_request_rate_limited(server, digits_model, digits_test) -> None:
    x, _ = digits_test
    server.served.faults.extend([None, ("status", 429, {"Retry-After": "0"})] * 10)  # every second request
    with _client(server, batch_size=10) as remote:
        assert torch.equal(remote.predict(x[:100]), digits_model.predict(x[:100]))
    assert server.served.answered_samples == 100
    assert server.served.infer_requests == 1 + 9 * 2  # every batch after the first was refused once


def test_retry_after_is_honoured_and_capped(server, digits_test) -> None:
    waits: list[float] = []
    in_an_hour = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    server.served.faults.extend([("status", 429, {"Retry-After": "0.25"}), ("status", 429, {"Retry-After": "30"}),
                                 ("status", 503, {"Retry-After": in_an_hour}), ("status", 500, {"Retry-After": "9"})])
    policy = RetryPolicy(max_retries=5, backoff_base=0.001, backoff_max=0.001, retry_after_max=2.0, sleep=waits.append)
    with _client(server, retry=policy) as remote:
        remote.logits(digits_test[0][:5])
    assert waits[:3] == [0.25, 2.0, 2.0]  # as asked, then capped (seconds and an HTTP date)
    assert 0.0005 <= waits[3] <= 0.001  # a 500's Retry-After is not a promise: plain backoff


def test_backoff_grows_with_seeded_jitter() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=5.0, seed=3)
    first = [policy.backoff(k, random.Random(3)) for k in range(5)]
    again = [policy.backoff(k, random.Random(3)) for k in range(5)]
    assert first == again
    assert all(0.5 * min(5.0, 2.0**k) <= wait <= min(5.0, 2.0**k) for k, wait in enumerate(first))
    assert policy.retry_after("soon") is None and policy.retry_after(None) is None
    assert policy.retry_after("-3") == 0.0


# --- failures that stop the attack, and resuming ----------------------------------------------------------


def test_persistent_failure_keeps_answers_and_a_rerun_resumes(server, digits_model, digits_test, tmp_path) -> None:
    x, _ = digits_test
    journal = tmp_path / "answers.jsonl"
    server.served.fail_after = 2
    remote = _client(server, batch_size=20, journal=journal)
    with pytest.raises(RemoteError) as raised:
        remote.logits(x[:100])
    message = str(raised.value)
    assert server.url + "/infer" in message and "HTTP 500" in message and "model worker crashed" in message
    assert "after 4 attempts" in message and "40 of the 100 new samples" in message and str(journal) in message
    assert raised.value.status == 500 and raised.value.url == server.url + "/infer"
    assert remote.used == 40 and server.served.infer_requests == 2 + 4
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 40 and json.loads(lines[0])["model"] == "digits"
    remote.close()

    server.served.fail_after, server.served.infer_requests = None, 0
    with _client(server, batch_size=20, journal=journal, budget=60) as resumed:
        scores = resumed.logits(x[:100])  # 40 from the journal, 60 asked: within a budget of 60
        assert server.served.infer_requests == 3 and resumed.used == 60 and resumed.served_from_cache == 40
        torch.testing.assert_close(scores, digits_model.logits(x[:100]).detach(), rtol=0, atol=1e-5)
        with pytest.raises(QueryBudgetExceeded, match="resume later with the same journal"):
            resumed.logits(x[100:101])
    assert len(journal.read_text().splitlines()) == 1 + 100


def test_unreachable_endpoint_fails_clearly() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteError, match=r"failed after 3 attempts; last: connection failed \(ConnectError") as raised:
        RemoteClassifier(f"http://127.0.0.1:{port}/v2/models/digits", retry=RetryPolicy(max_retries=2,
                                                                                        backoff_base=0.001))
    assert raised.value.status is None and str(port) in str(raised.value)


MALFORMED = {
    "not json": "not JSON",
    "nan": "NaN or infinite",
    "short data": "does not fit its 199 values",
    "wrong batch": r"for 20 samples; expected \[20, 10\]",
    "wrong classes": r"expected \[20, 10\] \(10 classes\)",
    "strings": "not a list of numbers",
}


@pytest.mark.parametrize("fault, problem", MALFORMED.items(), ids=MALFORMED.keys())
def test_malformed_answers_are_refused_not_retried(server, digits_test, tmp_path, fault, problem) -> None:
    server.served.faults.append((fault,))
    journal = tmp_path / "answers.jsonl"
    with _client(server, journal=journal) as remote, pytest.raises(RemoteError, match=problem):
        remote.logits(digits_test[0][:20])
    assert server.served.infer_requests == 1  # the same endpoint would give the same bad answer
    assert remote.used == 0 and len(journal.read_text().splitlines()) == 1  # nothing kept from it


def test_request_refused_by_the_endpoint_is_not_retried(server, digits_test) -> None:
    with _client(server, input_shape=(1, 8, 8), num_classes=10, access="scores", input_name="image") as remote:
        assert server.served.metadata_requests == 0  # everything was given: no metadata asked
        with pytest.raises(RemoteError, match="HTTP 400.*bad input image"):
            remote.logits(digits_test[0][:4])
    assert server.served.infer_requests == 1


# --- budget --------------------------------------------------------------------------------------------------


def test_budget_is_never_exceeded_and_refuses_before_sending(server, digits_test) -> None:
    x, _ = digits_test
    with _client(server, budget=100, batch_size=32) as remote:
        remote.logits(x[:60])
        before = server.served.infer_requests
        with pytest.raises(QueryBudgetExceeded, match="50 new samples .* 40 of the budget of 100 left; nothing was "
                                                      "sent. Raise the budget, or give a --journal next time"):
            remote.logits(x[60:110])  # without a journal, there is none to resume from
        assert server.served.infer_requests == before and remote.used == 60
        remote.logits(torch.cat([x[:60], x[60:100], x[60:100]]))  # repeats and known samples cost nothing
        assert remote.used == 100 and remote.remaining == 0
        remote.logits(x[:100])  # all known: no budget needed
        with pytest.raises(QueryBudgetExceeded):
            remote.logits(x[100:101])
    assert server.served.answered_samples == 100


def test_without_cache_every_call_asks(server, digits_test) -> None:
    x, _ = digits_test
    with _client(server, cache=False, budget=25) as remote:
        remote.logits(x[:10])
        remote.logits(x[:10])
        assert server.served.answered_samples == 20 and remote.used == 20
        with pytest.raises(QueryBudgetExceeded):
            remote.logits(x[:10])
    with pytest.raises(InputError, match="needs cache=True"):
        _client(server, cache=False, journal="answers.jsonl")


# --- API key -------------------------------------------------------------------------------------------------


def test_api_key_is_sent_and_never_shown(server, digits_test, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server.served.api_key = SECRET
    with pytest.raises(RemoteError, match="wants credentials: pass api_key"):
        _client(server)
    assert server.served.keys_seen == [None]  # a 401 is not retried
    server.served.faults.append(("status", 429, {"Retry-After": "0"}))
    with _client(server, api_key=SECRET) as remote:
        remote.logits(digits_test[0][:3])
        assert server.served.keys_seen[-1] == f"Bearer {SECRET}"
        shown = [repr(remote), json.dumps(remote.get_params()), repr(remote.session)]
        assert remote.get_params()["auth"] == {"header": "Authorization", "api_key": "<redacted>"}
    wrong = "wrong-" + SECRET
    with pytest.raises(RemoteError, match="refused the API key sent in the Authorization header") as raised:
        _client(server, api_key=wrong)
    shown.append(str(raised.value))
    assert "<redacted>" in str(raised.value)  # the server echoed the key; the message does not
    assert not any(SECRET in text for text in [*shown, caplog.text])


def test_api_key_in_another_header_and_from_the_environment(server, digits_test, monkeypatch) -> None:
    server.served.api_key, server.served.key_header = SECRET, "X-API-Key"
    with _client(server, api_key=SECRET, auth_header="X-API-Key") as remote:
        assert remote.predict(digits_test[0][:2]).shape == (2,)
    assert server.served.keys_seen[-1] == SECRET
    server.served.key_header = "Authorization"
    monkeypatch.setenv("BASTION_API_KEY", SECRET)
    loaded = load_classifier(server.url, budget=10)
    assert loaded.kind == "remote" and loaded.sha256 is None and isinstance(loaded.classifier, RemoteClassifier)
    assert loaded.classifier.budget == 10 and SECRET not in loaded.description
    assert loaded.classifier.predict(digits_test[0][:2]).shape == (2,)
    assert server.served.keys_seen[-1] == f"Bearer {SECRET}"
    loaded.classifier.close()
    with pytest.raises(InputError, match="control characters"):
        _client(server, api_key="key\r\nX-Evil: 1")


def test_load_classifier_keeps_remote_options_to_endpoints(digits_weights) -> None:
    with pytest.raises(InputError, match="http\\(s\\) endpoints only"):
        load_classifier("bastion.models.zoo:digits_cnn", budget=10)
    with pytest.raises(InputError, match="do not apply to a remote endpoint"):
        load_classifier("http://127.0.0.1:9/v2/models/m", weights=digits_weights)


# --- URLs and the journal file --------------------------------------------------------------------------------

URLS = {
    "https://host/v2/models/m": ("https://host", "m", None),
    "https://host:8443/serving/v2/models/m/versions/3/infer": ("https://host:8443/serving", "m", "3"),
    "http://host/v2/models/my%20model/": ("http://host", "my model", None),
}


@pytest.mark.parametrize("url, expected", URLS.items())
def test_endpoint_urls(url: str, expected: tuple) -> None:
    endpoint = parse_endpoint(url)
    assert (endpoint.base, endpoint.name, endpoint.version) == expected
    assert parse_endpoint("https://host/prefix/", model_name="m").infer_url == "https://host/prefix/v2/models/m/infer"


@pytest.mark.parametrize("url, problem", [
    ("https://host/", "names no model"),
    ("ftp://host/v2/models/m", "not an http"),
    ("https://user:pw@host/v2/models/m", "credentials"),
    ("https://host/v2/models/m?token=abc", "query string"),
])
def test_bad_endpoint_urls(url: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as raised:
        parse_endpoint(url)
    assert "pw@" not in str(raised.value) and "abc" not in str(raised.value)


def test_journal_survives_an_interrupted_write_and_refuses_another_model(server, digits_test, tmp_path) -> None:
    x, _ = digits_test
    journal = tmp_path / "answers.jsonl"
    with _client(server, journal=journal) as remote:
        remote.logits(x[:10])
    with open(journal, "a") as handle:
        handle.write('{"id": "ab')  # a crash in the middle of a write
    with _client(server, journal=journal) as resumed:
        resumed.logits(x[:10])
        assert resumed.used == 0 and resumed.served_from_cache == 10
        resumed.logits(x[10:12])
    assert journal.read_text().endswith("\n") and len(journal.read_text().splitlines()) == 1 + 12
    with pytest.raises(InputError, match="not for this classifier"):
        _client(server, journal=journal, access="labels", num_classes=10, input_shape=(64,), input_name="pixels")
    lines = journal.read_text().splitlines()
    lines[3] = '{"id": "zz", "scores": []}'
    journal.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 4 is damaged"):
        _client(server, journal=journal)


# --- attacks against the endpoint ---------------------------------------------------------------------------


def test_square_against_the_endpoint_matches_the_local_attack(server, digits_model, digits_points) -> None:
    x, y = digits_points[0][:6], digits_points[1][:6]
    threat = ThreatModel(norm="linf", eps=0.15, access="scores")
    attack = Square(queries=60)
    with _client(server, budget=2000) as remote:
        remote_result = attack(remote, x, y, threat, seed=0)
        assert 0 < remote.used <= int(remote_result.queries.sum())
    local_result = attack(digits_model, x, y, threat, seed=0)
    assert torch.equal(remote_result.success, local_result.success) and bool(remote_result.success.any())
    torch.testing.assert_close(remote_result.x_adv, local_result.x_adv, rtol=0, atol=1e-6)


def test_hopskipjump_against_a_labels_only_endpoint(server, digits_model, digits_points) -> None:
    server.served.output, server.served.output_name = "labels", "label"
    x, y = digits_points[0][:3], digits_points[1][:3]
    threat = ThreatModel(norm="l2", eps=1.0, access="labels")
    attack = HopSkipJump(iterations=3, initial_evals=20, max_evals=40)
    with _client(server, num_classes=10) as remote:
        result = attack(remote, x, y, threat, seed=0)
    local = attack(digits_model, x, y, threat, seed=0)
    assert torch.equal(result.success, local.success)
    torch.testing.assert_close(result.x_adv, local.x_adv, rtol=0, atol=1e-6)
    assert server.served.answered_samples > 0


def test_knockoff_extraction_within_both_budgets(server, digits_model, digits_test) -> None:
    x, _ = digits_test
    training = CopyTraining(epochs=2, min_steps=0)
    with _client(server, budget=80) as remote:
        with pytest.raises(QueryBudgetExceeded):  # the attack's budget is larger than the endpoint's
            KnockoffNets(digits_cnn, training=training).extract(remote, x[:150], budget=100, x_eval=x[150:],
                                                                 reference=digits_model)
        assert server.served.answered_samples == 0
        result = KnockoffNets(digits_cnn, training=training).extract(remote, x[:150], budget=80, x_eval=x[150:],
                                                                     reference=digits_model, checkpoints=[80])
        assert result.queries == 80 and remote.used == 80 and 0.0 <= result.fidelity <= 1.0
    assert server.served.answered_samples == 80
    assert np.isfinite(result.fidelity)
