"""The gateway's robustness acceptance checks (issue 6).

- A schemathesis run against the OpenAPI schema, with an admin key so that generated requests reach
  the real handlers, gets no 5xx.
- A load run from a second process (this one) against ``bastion serve`` loses no audit record and never
  lets a key past its rate limit or budget.
- A gateway killed with SIGKILL mid-load restarts with a valid audit chain, and every request it
  acknowledged before dying is in the audit log.

The last two start ``bastion serve`` as a separate process, as it is deployed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from bastion.gateway.app import create_app
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.settings import GatewaySettings
from bastion.models.loading import load_classifier
from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key

MODEL = "bastion.models.zoo:digits_cnn"
INFER = "/v2/models/digits/infer"
BASTION = str(Path(sys.executable).with_name("bastion"))
LOGGED = (200, 202, 422)  # the answers the gateway writes to the audit log (422: invalid or refused input)


# --- schemathesis ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory, digits_weights):
    home = tmp_path_factory.mktemp("fuzzed")
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=home, model_name="digits",
                               default_rate=None, default_budget=None, max_body_bytes=200_000, key_cache_seconds=0)
    loaded = load_classifier(MODEL, weights=digits_weights)
    with LiveServer(create_app(settings, loaded=loaded, policy=policy_from_dict(POLICY))) as server:
        server.admin = make_key(home, role="admin")[1]
        yield server


def _openapi_schema():
    """The gateway's schema, from the app itself (building the app opens nothing: that happens at start-up)."""
    schema = schemathesis.openapi.from_dict(create_app(GatewaySettings(environment="development")).openapi())
    # The served model's name and version, so that requests reach the model rather than a 404.
    schema.config.update(parameters={"name": "digits", "version": "1"})
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    schema.config.generation.update(max_examples=15)
    schema.config.seed = 6
    return schema


schema = _openapi_schema()


@schema.parametrize()
def test_generated_requests_never_get_a_server_error(case, fuzzed_gateway):
    case.call_and_validate(base_url=fuzzed_gateway.url, headers={"Authorization": f"Bearer {fuzzed_gateway.admin}"},
                           checks=[not_a_server_error], timeout=30)


finite_pixels = st.floats(min_value=0.0, max_value=1.0, width=32)
any_pixels = st.one_of(finite_pixels, st.floats(width=32), st.integers(-(2**70), 2**70),
                       st.sampled_from([0.0, 1.0, -0.0, 1e-45, 1 + 1e-7, -1e-7, float("nan"), float("inf")]))


@st.composite
def tensors(draw) -> tuple[list[int], str, list]:
    """An OIP v2 tensor of the digits model's shape, mostly valid: values in range, or anything a float can be."""
    count = draw(st.sampled_from([1, 1, 1, 2, 3, 64, 65, 0]))
    pixel = draw(st.sampled_from([finite_pixels, finite_pixels, any_pixels, st.just(0.0), st.just(1.0)]))
    data = draw(st.lists(pixel, min_size=count * 64, max_size=count * 64))
    return [count, 1, 8, 8], draw(st.sampled_from(["FP32", "FP32", "FP32", "FP64", "FP16"])), data


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tensor=tensors(), route=st.sampled_from(["infer", "predict"]))
def test_well_shaped_tensors_are_answered_and_logged(fuzzed_gateway, tensor, route):
    shape, datatype, data = tensor
    with fuzzed_gateway.client(fuzzed_gateway.admin) as client:
        if route == "infer":
            body = {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}
        else:
            body = {"instances": np.asarray(data, dtype=object).reshape(shape).tolist()}
        # json.dumps writes NaN and Infinity (httpx's json= refuses them): the gateway must refuse them itself.
        answer = client.post(INFER if route == "infer" else "/predict", content=json.dumps(body),
                             headers={"Content-Type": "application/json"})
        assert answer.status_code in LOGGED, answer.text
        request_id = answer.headers.get("x-request-id")
        assert request_id is not None or answer.json()["error"] == "invalid_request", answer.text
        if request_id is not None:
            record = client.get(f"/admin/audit/{request_id}")
            assert record.status_code == 200 and record.json()["status"] == answer.status_code


# --- bastion serve as a separate process -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**overrides: str) -> dict[str, str]:
    return {**os.environ, "BASTION_ENVIRONMENT": "test", "BASTION_SECRET_KEY": SECRET, "BASTION_DEFAULT_RATE": "",
            "BASTION_DEFAULT_BUDGET": "", "BASTION_KEY_CACHE_SECONDS": "0", "OMP_NUM_THREADS": "1", **overrides}


class GatewayProcess:
    """``bastion serve`` for the digits model in its own process, on a free loopback port, logs in ``home``."""

    def __init__(self, home: Path, weights: str, policy: Path) -> None:
        self.home, self.weights, self.policy = home, weights, policy
        self.process: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.home / "gateway.log", "ab")  # noqa: SIM115 - the child holds it until it ends
        self.process = subprocess.Popen(
            [BASTION, "serve", "--model", MODEL, "--weights", self.weights, "--policy", str(self.policy),
             "--name", "digits", "--home", str(self.home), "--port", str(port)],
            env=_environment(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 180  # against a hang only: start-up takes a few seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bastion serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"bastion serve did not become ready:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> bool:
        """Stop it the way an operator does (SIGTERM: uvicorn drains, the audit log is flushed); whether it
        shut down cleanly (uvicorn re-raises the signal once it has shut down, so -SIGTERM is a clean exit)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return code in (0, -signal.SIGTERM) and "Traceback" not in self.log()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def log(self) -> str:
        return (self.home / "gateway.log").read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@pytest.fixture
def served(tmp_path, digits_weights):
    """A ``GatewayProcess`` (not started yet) on a fresh home, with the policy file written there."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return GatewayProcess(tmp_path, digits_weights, policy)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BASTION, *args], env=_environment(), capture_output=True, text=True, timeout=300)


@dataclass(frozen=True)
class Answer:
    key: str
    status: int
    request_id: str | None
    error: str | None


def _requests(digits_arrays, count: int, keys: list[str], *, invalid_every: int = 50):
    """``count`` (key name, body) pairs: digits dealt round-robin to ``keys``, one in ``invalid_every`` out of range."""
    x, _ = digits_arrays
    pool = x[1200:]
    for index in range(count):
        image = pool[index % len(pool)][None]
        if index % invalid_every == invalid_every - 1:
            image = image + 2.0  # outside [0, 1]: a logged 422
        yield keys[index % len(keys)], infer_body(image)


async def _load(url: str, tokens: dict[str, str], work, *, concurrency: int, on_answer=None) -> list[Answer]:
    """Send every (key name, body) of ``work`` over ``concurrency`` connections; the answers, in completion order.

    A transport error (the gateway died) ends the worker that saw it; its request counts as unanswered.
    """
    answers: list[Answer] = []
    work = iter(work)
    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: otherwise a request sent
    # on a connection the server is closing at that moment is lost in transit (never reaching the gateway).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker() -> None:
            for name, body in work:
                try:
                    response = await client.post(INFER, json=body, headers={"Authorization": f"Bearer {tokens[name]}"})
                except httpx.TransportError as error:
                    answers.append(Answer(name, 0, None, type(error).__name__))
                    return
                error = response.json().get("error") if response.status_code >= 400 else None
                detail = response.json().get("detail", "") if response.status_code == 429 else ""
                answers.append(Answer(name, response.status_code, response.headers.get("x-request-id"),
                                      f"{error}: {detail}" if detail else error))
                if on_answer is not None:
                    on_answer(answers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


def _audit_rows(home: Path) -> list[tuple[str, str, str, int]]:
    """``(request_id, key_id, time, status)`` of every audit record, in chain order."""
    with sqlite3.connect(home / "bastion.db") as connection:
        return connection.execute("SELECT request_id, key_id, time, status FROM audit_records ORDER BY seq").fetchall()


def _seconds(text: str) -> float:
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def _tightest_window(times: list[float], limit: int) -> float:
    """The shortest span holding ``limit + 1`` of ``times`` (inf when there are not that many)."""
    ordered = np.sort(np.asarray(times))
    if len(ordered) <= limit:
        return float("inf")
    return float((ordered[limit:] - ordered[:-limit]).min())


@pytest.mark.parametrize("count, rate, period, budget", [
    pytest.param(2_000, "5/second", 1.0, 100, id="2k"),
    pytest.param(20_000, "200/minute", 60.0, 1000, id="20k", marks=pytest.mark.slow),
])
def test_load_loses_no_audit_record_and_keeps_every_limit(served, digits_arrays, count, rate, period, budget):
    home = served.home
    tokens, ids = {}, {}
    for name, options in (("plain-a", {}), ("plain-b", {}), ("plain-c", {}), ("plain-d", {}),
                          ("limited", {"rate": rate}), ("budgeted", {"budget": f"{budget}/day"})):
        ids[name], tokens[name] = make_key(home, name=name, **options)
    with served:
        started = time.perf_counter()
        answers = asyncio.run(_load(served.url, tokens, _requests(digits_arrays, count, list(tokens)),
                                    concurrency=32))
        seconds = time.perf_counter() - started
        assert served.stop(), served.log()[-3000:]
    statuses = Counter(a.status for a in answers)
    print(f"\n{count} requests in {seconds:.1f} s ({count / seconds:.0f}/s): {dict(statuses)}")
    assert len(answers) == count
    assert set(statuses) <= {200, 202, 422, 429}, [a for a in answers if a.status not in (200, 202, 422, 429)][:5]
    assert statuses[200] > count // 2
    # No record lost: the answers with a request id are exactly the audit log, one record each.
    logged = [a for a in answers if a.request_id is not None]
    assert all(a.status in LOGGED for a in logged) and all(a.request_id for a in answers if a.status in (200, 202))
    assert statuses[422] == len([a for a in logged if a.status == 422]) > 0
    rows = _audit_rows(home)
    assert len(rows) == len(logged)
    assert {row[0] for row in rows} == {a.request_id for a in logged}
    verify = _cli("audit", "verify", "--home", str(home))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{len(rows)} records" in verify.stdout
    # The limited key: refused once over its rate, and never more than its limit in any window of its period.
    limit = int(rate.split("/")[0])
    limited = [a for a in answers if a.key == "limited"]
    assert any(a.status == 429 and "key rate" in a.error for a in limited)
    times = [_seconds(row[2]) for row in rows if row[1] == ids["limited"]]
    assert limit <= len(times) == len([a for a in limited if a.request_id])
    # Each record is timed a few ms after its admission: allow that much (a tenth of the period at most).
    assert _tightest_window(times, limit) >= period * 0.9
    # The budgeted key (one instance per request): exactly its budget answered, then refused.
    budgeted = Counter((a.status, a.error) for a in answers if a.key == "budgeted")
    assert len([row for row in rows if row[1] == ids["budgeted"]]) == budget
    assert sum(n for (status, _), n in budgeted.items() if status != 429) == budget
    assert all("key budget" in error for (status, error) in budgeted if status == 429)


def test_gateway_killed_mid_load_restarts_with_every_acknowledged_request_logged(served, digits_arrays):
    home = served.home
    _, key = make_key(home)
    with served:
        pid = served.process.pid

        def kill_midway(answers: list[Answer]) -> None:
            if len(answers) == 300:
                os.kill(pid, signal.SIGKILL)

        answers = asyncio.run(_load(served.url, {"client": key}, _requests(digits_arrays, 5_000, ["client"]),
                                    concurrency=16, on_answer=kill_midway))
        assert served.process.wait(timeout=60) == -signal.SIGKILL
    acknowledged = {a.request_id for a in answers if a.request_id is not None}
    assert len(acknowledged) >= 300
    assert any(a.status == 0 for a in answers)  # requests were in flight when it died
    logged_before = {row[0] for row in _audit_rows(home)}
    assert acknowledged <= logged_before
    with served:  # the restart adopts records committed after the last anchor update
        after = asyncio.run(_load(served.url, {"client": key}, _requests(digits_arrays, 20, ["client"]),
                                  concurrency=4))
        assert all(a.status in LOGGED for a in after)
        assert served.stop(), served.log()[-3000:]
    verify = _cli("audit", "verify", "--home", str(home))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = _audit_rows(home)
    assert acknowledged | {a.request_id for a in after} <= {row[0] for row in rows}
    assert len(rows) == len(logged_before) + len(after)
