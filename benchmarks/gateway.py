"""Gateway throughput benchmark (issue 6): ``bastion serve`` with its full policy against a bare FastAPI endpoint.

Run from the repository root (Fashion-MNIST from ``apt-get install dataset-fashion-mnist``)::

    .venv/bin/python benchmarks/gateway.py                  # about 15 minutes on 2 busy cores
    .venv/bin/python benchmarks/gateway.py --rounds 5 --requests 5000 --concurrency 16
    .venv/bin/python benchmarks/gateway.py --quick          # smoke run, figures mean nothing

Results go to ``benchmarks/results/<--out>.json`` (default ``gateway_throughput``) and a table is
printed. Targets (issue 6): throughput with the full policy at least 0.8x the bare endpoint's, and
p99 added latency under 5 ms.

Setup:

1. Model: ``bastion.models.zoo:fashion_cnn`` trained by ``train_classifier`` (Adam at 1e-3, batches
   of 64, ``--epochs`` epochs, default 1) on Fashion-MNIST training images 0..49,999; weights
   cached under ``benchmarks/out/gateway/``. Requests: the 10,000 test images, one per request, as
   OIP v2 JSON (``FP32``, ``[1, 1, 28, 28]``, the float32 values written out in full).
2. Servers, each its own uvicorn process on loopback, ``torch.set_num_threads(1)``, access log off,
   ``log_level="warning"`` (what ``bastion serve`` runs):

   - ``bare``: a minimal FastAPI endpoint on ``/v2/models/fashion/infer``: the body parsed into a
     pydantic model (``data: list[float]``), ``np.asarray`` to a tensor, the same model adapter's
     forward pass, softmax, and the OIP v2 answer (probabilities and label) as JSON. No auth, no logs.
   - ``gateway-shared``: ``bastion serve`` with the full policy: API key auth (``Authorization:
     Bearer``), a global rate limit, per-key rate limits and budgets (large enough never to refuse),
     input validation, bit-depth sanitisation (6 bits), the ``energy`` and ``confidence`` detectors
     (they read the logits of the answer's forward pass), the decision rules (flag at 1 detector,
     review at 2), the ``full`` output policy, the extraction monitor, the JSON access log (to a
     file) and the SQLite audit log (hash-chained, every record committed before the answer).
     Detectors fitted on training images 50,000..51,999 (never trained on) at 1% false positives.
     ``--memory-format channels_last`` sets the policy's ``memory_format`` and gives the bare endpoint's model
     the same layout (default: contiguous, the policy's default).
   - ``gateway-unbatched``: ``gateway-shared`` with micro-batching off (``BASTION_BATCH_INSTANCES=1``): every
     request its own forward pass, as the bare endpoint does. ``gateway-shared`` batches the requests
     that arrive while the event loop serves others (at most 64 instances a pass).
   - ``gateway-squeeze``: the same plus the ``squeeze`` detector, which runs a second forward pass on
     two squeezed copies of each input.

3. Load: a separate process (``gateway.py load``) with ``--concurrency`` keep-alive connections and
   a minimal asyncio HTTP/1.1 client (requests built before the clock starts; it still spends about
   0.9 ms of CPU a request on this machine), ``--warmup`` requests first, then ``--requests`` timed ones;
   the gateway's requests are dealt round-robin to ``--keys`` API keys. Throughput = timed requests / wall time.
   Each server's own CPU a request (all its threads, read from ``/proc`` around the load run, warm-up included)
   is recorded beside it (``server_cpu_us``, and ``cpu_ratio_to_bare`` in the summary): when both servers are
   busy throughout, throughput is the inverse of it, and it does not depend on the load generator's speed.
   Sequential latency: ``--sequential`` requests at concurrency 1. With 2 CPUs or more, the servers run on the
   last CPU and the load generator on the others (``--no-pin``: anywhere). Unpinned, a server and the load
   generator ran in turn on this 2-CPU machine (each server's loop about 65% busy), so the figure was the pair's.
4. Rounds: all servers run side by side (an idle one costs nothing) and are loaded one at a time,
   ``--rounds`` rounds, the order rotating each round. This machine's speed drifts by a third from
   minute to minute, so the ratio to bare and the added latencies are compared within each round
   (each server against the bare endpoint loaded in the same round) and the median over rounds is
   reported; absolute figures are medians over rounds.
5. Where the gateway's time goes: every stage of one request timed in-process on the
   ``gateway-shared`` state (``--profile-requests`` requests, median per stage), and a cProfile of
   the live gateway's event-loop thread under load (top functions by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent
RESULTS, CACHE = ROOT / "results", ROOT / "out" / "gateway"
FACTORY = "bastion.models.zoo:fashion_cnn"
NAME, SECRET = "fashion", "benchmark-secret-0123456789-abcdefghijkl"
PATH = f"/v2/models/{NAME}/infer"
TRAIN_SPLIT, REFERENCE_SIZE = 50_000, 2000
BASE_POLICY: dict[str, Any] = {
    "sanitise": {"bit_depth": 6},
    "reference_limit": REFERENCE_SIZE,
    "decision": {"flag_at": 1, "review_at": 2},
    "output": {"default": "full"},
    "extraction": {"enabled": True, "throttle": False},
}
SHARED = [{"kind": "energy", "false_positive_rate": 0.01}, {"kind": "confidence", "false_positive_rate": 0.01}]
DETECTORS = {
    "gateway-shared": SHARED,
    "gateway-squeeze": [*SHARED, {"kind": "squeeze", "false_positive_rate": 0.01}],
    "gateway-unbatched": SHARED,
}
#: BASTION_BATCH_INSTANCES per variant (the gateway's default, 64, where absent).
BATCH_INSTANCES = {"gateway-unbatched": 1}
QUICK = {"epochs": 1, "rounds": 1, "requests": 300, "warmup": 50, "sequential": 100, "profile_requests": 100}


# ------------------------------------------------------------------------------------------------ setup


def prepare_model(epochs: int) -> tuple[Path, str]:
    """The fashion_cnn weights (trained once per epoch count, cached) and how they were got."""
    import torch
    from safetensors.torch import save_file

    from bastion.data.sources import load_dataset
    from bastion.defenses.training import train_classifier
    from bastion.models.torch_adapter import TorchClassifier
    from bastion.models.zoo import fashion_cnn

    path = CACHE / f"fashion-cnn-e{epochs}-s0.safetensors"
    if path.is_file():
        return path, f"cached {path.relative_to(ROOT.parent)}"
    train = load_dataset("fashion-mnist:train")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = TorchClassifier(fashion_cnn(), (1, 28, 28), 10)
    started = time.perf_counter()
    train_classifier(model, train.x[:TRAIN_SPLIT], train.y[:TRAIN_SPLIT], epochs=epochs, seed=0)
    CACHE.mkdir(parents=True, exist_ok=True)
    save_file(model.state_tensors(), str(path))
    return path, f"trained in {time.perf_counter() - started:.0f} s, saved to {path.relative_to(ROOT.parent)}"


def prepare_reference() -> Path:
    """Training images 50,000..51,999 (never trained on) as an ``.npz`` the policy's detectors are fitted on."""
    from bastion.data.sources import load_dataset

    path = CACHE / "reference-train-50000-52000.npz"
    if not path.is_file():
        train = load_dataset("fashion-mnist:train")
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=train.x[TRAIN_SPLIT:TRAIN_SPLIT + REFERENCE_SIZE], y=train.y[TRAIN_SPLIT:TRAIN_SPLIT +
                                                                                      REFERENCE_SIZE])
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: CPUs for the servers and for the load generator (``None``: any); set by ``--pin`` (see :func:`pinning`).
CPUS: dict[str, set[int] | None] = {"servers": None, "load": None}


def pinning(enabled: bool) -> dict[str, list[int]] | None:
    """Give the servers the last CPU and the load generator the others (needs 2 CPUs). Unpinned on this 2-CPU
    machine, a server and the load generator ran in turn rather than side by side (the kernel puts a task woken
    over loopback on its waker's CPU): each server's event loop was about 65% busy with 8 requests always
    outstanding, so the figure measured the pair, not the server."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(cpus) < 2:
        CPUS.update(servers=None, load=None)
        return None
    CPUS.update(servers={cpus[-1]}, load=set(cpus[:-1]))
    return {"servers": cpus[-1:], "load": cpus[:-1]}


def _pin(process: subprocess.Popen, role: str) -> subprocess.Popen:
    """Put a child just started on ``role``'s CPUs (if pinned). It is still starting the interpreter, so every
    thread it starts later inherits them (no ``preexec_fn``: unsafe in a parent with threads, such as torch's)."""
    if CPUS[role] is not None:
        os.sched_setaffinity(process.pid, CPUS[role])
    return process


class Server:
    """One server process on a free loopback port; ``keys`` are the API keys its clients send (none for bare)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path, keys: list[str]) -> None:
        self.name, self.command, self.env, self.log, self.keys = name, command, env, log, keys
        self.port = free_port()
        self.command = [*command, "--port", str(self.port)]

    def start(self) -> Server:
        with open(self.log, "wb") as log:
            self.process = _pin(subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT),
                                "servers")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start within 300 s: see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def bare_server(factory: str, weights: Path, work: Path) -> Server:
    command = [sys.executable, str(Path(__file__).resolve()), "bare-server", "--factory", factory, "--weights",
               str(weights), "--memory-format", BASE_POLICY.get("memory_format", "contiguous")]
    return Server("bare", command, server_env(), work / "bare.log", [])


def gateway_server(name: str, factory: str, weights: Path, reference: Path, work: Path, keys: int, *,
                   profile: Path | None = None) -> Server:
    """``bastion serve`` for ``name``'s policy on a fresh home, with ``keys`` client keys created in its database."""
    import yaml

    from bastion.gateway.keys import create_key
    from bastion.storage.database import open_database

    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    policy = home / "policy.yaml"
    policy.write_text(yaml.safe_dump({**BASE_POLICY, "reference": str(reference), "detectors": DETECTORS[name]}),
                      encoding="utf-8")
    tokens = []
    with open_database(home=home) as database, database.transaction() as session:
        for index in range(keys):
            _, token = create_key(session, secret=SECRET, name=f"load-{index}", rate="1000000/minute",
                                  budget="100000000/day", actor="benchmark")
            tokens.append(token)
    env = {**server_env(), "BASTION_ENVIRONMENT": "production", "BASTION_SECRET_KEY": SECRET,
           "BASTION_GLOBAL_RATE": "1000000/second", "BASTION_BATCH_INSTANCES": str(BATCH_INSTANCES.get(name, 64))}
    options = ["--model", factory, "--weights", str(weights), "--policy", str(policy), "--name", NAME,
               "--home", str(home), "--threads", "1"]
    if profile is None:
        command = [str(Path(sys.executable).with_name("bastion")), "serve", *options]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "profile-server", "--stats", str(profile), *options]
    return Server(name, command, env, home / "gateway.log", tokens)


# ------------------------------------------------------------------------------------------------ servers


class BareTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class BareRequest(BaseModel):
    """The bare endpoint's body: OIP v2 with one FP32 tensor."""

    inputs: list[BareTensor]


def run_bare_server(args: argparse.Namespace) -> None:
    """The baseline: the same model behind the least a FastAPI endpoint needs to answer OIP v2."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from bastion.models.loading import load_classifier

    torch.set_num_threads(1)
    model = load_classifier(args.factory, weights=args.weights).classifier
    if args.memory_format == "channels_last":  # the layout the gateway's policy gives the model
        model = model.in_channels_last()
    app = FastAPI()

    @app.post(PATH)
    async def infer(body: BareRequest) -> JSONResponse:
        tensor = body.inputs[0]
        x = torch.from_numpy(np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape))
        with torch.no_grad():
            probabilities = torch.softmax(model.logits(x), dim=1)
        n, classes = probabilities.shape
        return JSONResponse({"model_name": NAME, "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [n, classes],
             "data": probabilities.reshape(-1).tolist()},
            {"name": "label", "datatype": "INT64", "shape": [n], "data": probabilities.argmax(dim=1).tolist()}]})

    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


def run_profile_server(args: argparse.Namespace) -> None:
    """``bastion serve`` (the same steps as ``serve_command``) under cProfile; SIGUSR1 writes the statistics."""
    import torch
    import uvicorn

    from bastion.gateway.app import create_app
    from bastion.gateway.logs import configure_json_logs
    from bastion.gateway.settings import GatewaySettings

    settings = GatewaySettings(model=args.model, weights=args.weights, policy=args.policy, model_name=args.name,
                               home=args.home)
    torch.set_num_threads(args.threads)
    configure_json_logs()
    app = create_app(settings)
    profiler = cProfile.Profile()

    def dump(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(args.stats)

    def start(*_: object) -> None:
        profiler.enable()

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, start)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


# ------------------------------------------------------------------------------------------------ load


def request_bodies(limit: int | None = None) -> list[bytes]:
    """The Fashion-MNIST test images as OIP v2 request bodies, one image each."""
    from bastion.data.sources import load_dataset

    test = load_dataset("fashion-mnist:test", limit=limit)
    return [json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                    "data": image.reshape(-1).tolist()}]}).encode() for image in test.x]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _drive(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float], Counter]:
    """Send ``requests`` over ``concurrency`` keep-alive connections; wall seconds, latencies (s), statuses."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    work = iter(requests)
    latencies: list[float] = []
    statuses: Counter = Counter()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in work:
            started = time.perf_counter()
            status = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(*connection) for connection in connections))
    seconds = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return seconds, latencies, statuses


def run_load(args: argparse.Namespace) -> None:
    """The load generator process: prints one JSON object with the timed run's figures."""
    bodies = request_bodies()
    keys = args.key or [None]
    heads = [(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\nContent-Type: application/json\r\n"
              + (f"Authorization: Bearer {key}\r\n" if key else "")) for key in keys]

    def build(count: int, offset: int) -> list[bytes]:
        out = []
        for index in range(offset, offset + count):
            body = bodies[index % len(bodies)]
            out.append(f"{heads[index % len(heads)]}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return out

    warmup, timed = build(args.warmup, args.offset), build(args.requests, args.offset + args.warmup)
    if warmup:
        asyncio.run(_drive(args.port, warmup, args.concurrency))
    seconds, latencies, statuses = asyncio.run(_drive(args.port, timed, args.concurrency))
    milliseconds = np.asarray(latencies) * 1000
    print(json.dumps({"requests": len(timed), "seconds": seconds, "throughput": len(timed) / seconds,
                      "p50_ms": float(np.percentile(milliseconds, 50)),
                      "p99_ms": float(np.percentile(milliseconds, 99)),
                      "mean_ms": float(milliseconds.mean()), "statuses": {str(k): v for k, v in statuses.items()}}))


def server_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user and system) the process has used so far, all its threads; ``None`` without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server: Server, *, requests: int, warmup: int, concurrency: int, offset: int) -> dict[str, Any]:
    """One load run against ``server``: the load generator's figures, plus ``server_cpu_us`` (the server's CPU a
    request, warm-up requests included; the machine's speed drifts, but within a round this compares servers)."""
    cpu_before = server_cpu_seconds(server.process.pid)
    command = [sys.executable, str(Path(__file__).resolve()), "load", "--port", str(server.port), "--requests",
               str(requests), "--warmup", str(warmup), "--concurrency", str(concurrency), "--offset", str(offset)]
    for key in server.keys:
        command += ["--key", key]
    with _pin(subprocess.Popen(command, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
              "load") as generator:
        try:
            stdout, stderr = generator.communicate(timeout=3600)
        except subprocess.TimeoutExpired:
            generator.kill()
            raise
    cpu_after = server_cpu_seconds(server.process.pid)
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed against {server.name}:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if cpu_before is not None and cpu_after is not None:
        result["server_cpu_us"] = round(1e6 * (cpu_after - cpu_before) / (requests + warmup), 1)
    answered = sum(v for k, v in result["statuses"].items() if k in ("200", "202"))
    if answered != result["requests"]:
        raise RuntimeError(f"{server.name} answered {result['statuses']}: not every request was served")
    return result


# ------------------------------------------------------------------------------------------------ profile


def stage_profile(factory: str, weights: Path, reference: Path, work: Path, requests: int) -> dict[str, Any]:
    """Each stage of one gateway request, timed in-process on the gateway-shared policy (median microseconds),
    with the bare endpoint's own steps for comparison."""
    import logging

    import orjson
    import torch
    from fastapi.responses import JSONResponse

    from bastion.gateway.inference import _answer, _count, _record, _watch, new_request_id
    from bastion.gateway.jsonio import FastJSONResponse
    from bastion.gateway.keys import create_key
    from bastion.gateway.logs import configure_json_logs
    from bastion.gateway.policy import policy_from_dict
    from bastion.gateway.schemas import InferRequest
    from bastion.gateway.settings import GatewaySettings
    from bastion.gateway.state import build_state
    from bastion.storage.database import open_database

    torch.set_num_threads(1)
    home = work / "stages"
    home.mkdir(parents=True, exist_ok=True)
    with open_database(home=home) as database, database.transaction() as session:
        _, token = create_key(session, secret=SECRET, name="stages", rate="1000000/minute", budget="100000000/day",
                              actor="benchmark")
    policy = policy_from_dict({**BASE_POLICY, "reference": str(reference), "detectors": DETECTORS["gateway-shared"]})
    settings = GatewaySettings(environment="production", secret_key=SECRET, home=home, model=factory,
                               weights=str(weights), model_name=NAME, global_rate="1000000/second")
    state = build_state(settings, policy=policy)
    configure_json_logs()
    access = logging.getLogger("bastion.gateway.access")
    handler = logging.getLogger("bastion.gateway").handlers[0]
    handler.setStream(open(home / "access.log", "w"))  # noqa: SIM115 - kept open for the run
    pipeline, model = state.served.pipeline, state.served.pipeline.model
    bodies = request_bodies(limit=requests)
    times: dict[str, list[float]] = {}

    def timed(stage: str, function, *args, **kwargs):
        started = time.perf_counter()
        value = function(*args, **kwargs)
        times.setdefault(stage, []).append(time.perf_counter() - started)
        return value

    def new_record(key, request_id, x, evaluation, result):  # the input hash is computed here
        return _record(state.served, key, request_id, x.numpy(), evaluation, result.body, evaluation.decision,
                       result.status, time=datetime.now(timezone.utc))

    def parse_body(body: bytes) -> InferRequest:
        return InferRequest.model_validate(orjson.loads(body))

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.logits(x)

    def commit(record) -> list[int]:
        return state.audit.write([record])  # one record per transaction, and the head anchor rewritten

    def bare_tensor(body: bytes) -> torch.Tensor:
        data = json.loads(body)["inputs"][0]["data"]
        return torch.from_numpy(np.asarray(data, dtype=np.float32).reshape(1, 1, 28, 28))

    def bare_answer(x: torch.Tensor) -> JSONResponse:
        return JSONResponse({"data": torch.softmax(forward(x), dim=1).reshape(-1).tolist()})

    try:
        for body in bodies:
            request = timed("parse JSON (orjson) + pydantic body", parse_body, body)
            tensor = request.inputs[0]
            key = timed("key lookup (HMAC, cache)", state.keys.lookup, token)
            timed("limits (global, rate, budget)", state.throttle.admit, key, 1)
            request_id = new_request_id()
            x = timed("validate tensor", pipeline.tensor, tensor.shape, tensor.datatype, tensor.data)
            timed("  (model forward alone)", forward, x)
            evaluation = timed("evaluate: sanitise + model + detectors + decision", pipeline.evaluate, x)
            timed("metrics", _count, state, evaluation)
            timed("extraction monitor", _watch, state, state.served, key, x.numpy(), evaluation)
            result = timed("answer + output policy", _answer, state.served, key, request_id, evaluation, None)
            record = timed("audit record (fields, input hash)", new_record, key, request_id, x, evaluation, result)
            timed("audit commit + head anchor (one record)", commit, record)
            timed("response JSON (orjson)", FastJSONResponse, result.body, status_code=result.status,
                  headers={"X-Request-Id": request_id})
            timed("access log line", access.info, "request", extra={
                "method": "POST", "path": PATH, "route": "/v2/models/{name}/infer", "status": result.status,
                "ms": 1.0, "key_id": key.id})
            # The bare endpoint's steps, on the same body.
            bare = timed("bare: parse + tensor", bare_tensor, body)
            timed("bare: forward + softmax + answer", bare_answer, bare)
    finally:
        state.close()
    return {stage: round(statistics.median(values) * 1e6, 1) for stage, values in times.items()}


def top_functions(stats_file: Path, count: int = 25) -> list[dict[str, Any]]:
    """The ``count`` functions with the most own time in a cProfile statistics file."""
    stats = pstats.Stats(str(stats_file))
    total = sum(row[2] for row in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": round(own, 3),
             "own_share": round(own / total, 3), "cumulative_s": round(cumulative, 3)}
            for (file, line, name), (_, calls, own, cumulative, _) in rows]


# ------------------------------------------------------------------------------------------------ main


def median_of(rounds: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in rounds))


def paired_median(figures: dict[str, list[dict[str, Any]]], name: str, field: str, compare) -> float:
    """The median over rounds of ``compare(server's figure, bare's figure)`` within each round: this machine's
    speed drifts by a third from minute to minute, and a round's servers run minutes apart at most."""
    return float(statistics.median(compare(mine[field], bare[field])
                                   for mine, bare in zip(figures[name], figures["bare"], strict=True)))


def run(args: argparse.Namespace) -> None:
    import tempfile

    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.weights is None:
        weights, how = prepare_model(args.epochs)
    else:
        weights, how = Path(args.weights), f"given {args.weights}"
    reference = prepare_reference()
    if args.memory_format != "contiguous":
        BASE_POLICY["memory_format"] = args.memory_format
    pinned = pinning(args.pin)
    print(f"model: {args.factory}, {how}; CPUs: {pinned or 'not pinned'}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bastion-gateway-bench-") as folder:
        work = Path(folder)
        servers = [bare_server(args.factory, weights, work)] + [
            gateway_server(name, args.factory, weights, reference, work, args.keys) for name in args.variants]
        for server in servers:
            server.start()
        throughput: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        sequential: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        try:
            offset = 0
            for round_index in range(args.rounds):
                order = servers[round_index % len(servers):] + servers[:round_index % len(servers)]
                for server in order:
                    figures = load(server, requests=args.requests, warmup=args.warmup,
                                   concurrency=args.concurrency, offset=offset)
                    throughput[server.name].append(figures)
                    cpu = f", server CPU {figures['server_cpu_us']:.0f} us/req" if "server_cpu_us" in figures else ""
                    print(f"round {round_index + 1} {server.name:16s} c={args.concurrency}: "
                          f"{figures['throughput']:7.1f} req/s, p50 {figures['p50_ms']:.2f} ms, "
                          f"p99 {figures['p99_ms']:.2f} ms{cpu}", flush=True)
                for server in order:
                    figures = load(server, requests=args.sequential, warmup=20, concurrency=1, offset=offset)
                    sequential[server.name].append(figures)
                    print(f"round {round_index + 1} {server.name:16s} c=1: p50 {figures['p50_ms']:.2f} ms, "
                          f"p99 {figures['p99_ms']:.2f} ms", flush=True)
                offset += args.requests + args.warmup
        finally:
            for server in servers:
                server.stop()
        profile = None
        if args.profile_requests:
            profile = {"stages_us": stage_profile(args.factory, weights, reference, work, args.profile_requests),
                       "cprofile_top": live_profile(args, weights, reference, work)}
    write_results(args, how, throughput, sequential, profile, load_before, pinned)


def live_profile(args: argparse.Namespace, weights: Path, reference: Path, work: Path) -> list[dict[str, Any]]:
    """cProfile of the gateway-shared server's event-loop thread over ``--requests`` requests after a warm-up."""
    stats = work / "gateway.prof"
    server = gateway_server("gateway-shared", args.factory, weights, reference, work / "profiled", args.keys,
                            profile=stats)
    server.start()
    try:
        load(server, requests=args.warmup, warmup=0, concurrency=args.concurrency, offset=0)
        server.process.send_signal(signal.SIGUSR2)
        time.sleep(0.5)
        load(server, requests=args.requests, warmup=0, concurrency=args.concurrency, offset=args.warmup)
        server.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not stats.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
    return top_functions(stats)


def write_results(args: argparse.Namespace, how: str, throughput: dict[str, list[dict[str, Any]]],
                  sequential: dict[str, list[dict[str, Any]]], profile: dict[str, Any] | None,
                  load_before: tuple[float, float, float], pinned: dict[str, list[int]] | None) -> None:
    import torch

    summary: dict[str, dict[str, float]] = {}
    for name in throughput:
        summary[name] = {
            "throughput_rps": round(median_of(throughput[name], "throughput"), 1),
            "ratio_to_bare": round(paired_median(throughput, name, "throughput", lambda a, b: a / b), 3),
            "loaded_p50_ms": round(median_of(throughput[name], "p50_ms"), 2),
            "loaded_p99_ms": round(median_of(throughput[name], "p99_ms"), 2),
            "sequential_p50_ms": round(median_of(sequential[name], "p50_ms"), 3),
            "sequential_p99_ms": round(median_of(sequential[name], "p99_ms"), 3),
            "added_p99_ms": round(paired_median(sequential, name, "p99_ms", lambda a, b: a - b), 3),
            "added_p50_ms": round(paired_median(sequential, name, "p50_ms", lambda a, b: a - b), 3),
        }
        if all("server_cpu_us" in figures for figures in throughput[name] + throughput["bare"]):
            summary[name]["server_cpu_us"] = round(median_of(throughput[name], "server_cpu_us"), 1)
            summary[name]["cpu_ratio_to_bare"] = round(paired_median(throughput, name, "server_cpu_us",
                                                                     lambda a, b: b / a), 3)
        summary[name]["meets_targets"] = bool(name == "bare" or (summary[name]["ratio_to_bare"] >= 0.8
                                                                  and summary[name]["added_p99_ms"] < 5.0))
    document = {
        "benchmark": "gateway_throughput", "issue": 6,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "pinned": pinned, "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "model": {"factory": args.factory, "weights": how, "epochs": None if args.weights else args.epochs},
        "settings": {"rounds": args.rounds, "requests": args.requests, "warmup": args.warmup,
                     "concurrency": args.concurrency, "sequential": args.sequential, "keys": args.keys,
                     "policy": BASE_POLICY, "detectors": {name: DETECTORS[name] for name in args.variants}},
        "targets": {"throughput_ratio": 0.8, "added_p99_ms": 5.0},
        "summary": summary, "rounds": {"throughput": throughput, "sequential": sequential}, "profile": profile,
    }
    path = RESULTS / f"{args.out}.json"
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(f"\n{'server':16s} {'req/s':>7s} {'x bare':>7s} {'p50':>7s} {'p99':>7s} | {'seq p50':>8s} {'seq p99':>8s} "
          f"{'+p50':>7s} {'+p99':>7s}   (ms; median of {args.rounds} rounds, c={args.concurrency})")
    for name, row in summary.items():
        cpu = (f"   server CPU {row['server_cpu_us']:.0f} us/req (bare/this {row['cpu_ratio_to_bare']:.3f})"
               if "server_cpu_us" in row else "")
        print(f"{name:16s} {row['throughput_rps']:7.1f} {row['ratio_to_bare']:7.3f} {row['loaded_p50_ms']:7.2f} "
              f"{row['loaded_p99_ms']:7.2f} | {row['sequential_p50_ms']:8.3f} {row['sequential_p99_ms']:8.3f} "
              f"{row['added_p50_ms']:7.3f} {row['added_p99_ms']:7.3f}{cpu}")
    if profile is not None:
        print("\nstages of one gateway request (median us, in-process):")
        for stage, micros in profile["stages_us"].items():
            print(f"  {stage:52s} {micros:9.1f}")
        print("\ncProfile of the gateway's event loop under load, top own time:")
        for row in profile["cprofile_top"][:15]:
            print(f"  {row['own_share']:6.1%} {row['own_s']:8.3f} s {row['calls']:8d}  {row['function']}")
    shown = path.relative_to(ROOT.parent) if path.is_relative_to(ROOT.parent) else path  # --out may be absolute
    print(f"\nwritten to {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    parser.add_argument("--factory", default=FACTORY, help="the served model's factory (default %(default)s)")
    parser.add_argument("--weights", help="its weights; default: fashion_cnn trained for --epochs (cached)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the model (cached)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1200, help="timed requests per server per round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sequential", type=int, default=400, help="requests at concurrency 1 per round")
    parser.add_argument("--keys", type=int, default=4, help="API keys the gateway's load is dealt to")
    parser.add_argument("--variants", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--profile-requests", type=int, default=500, help="0: no profile")
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--out", default="gateway_throughput")
    parser.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous",
                        help="the model's memory layout in every server: the gateways' policy memory_format, and the "
                             "bare endpoint's model the same (default %(default)s)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="servers on the last CPU, the load generator on the others (default; needs 2 CPUs)")

    bare = commands.add_parser("bare-server", help="(internal) the bare FastAPI endpoint")
    bare.add_argument("--factory", required=True)
    bare.add_argument("--weights", required=True)
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous")
    profiled = commands.add_parser("profile-server", help="(internal) bastion serve under cProfile")
    for option in ("--stats", "--model", "--weights", "--policy", "--name", "--home"):
        profiled.add_argument(option, required=True)
    profiled.add_argument("--threads", type=int, default=1)
    profiled.add_argument("--port", type=int, required=True)
    generator = commands.add_parser("load", help="(internal) the load generator")
    generator.add_argument("--port", type=int, required=True)
    generator.add_argument("--requests", type=int, required=True)
    generator.add_argument("--warmup", type=int, default=0)
    generator.add_argument("--concurrency", type=int, default=8)
    generator.add_argument("--offset", type=int, default=0, help="first test image")
    generator.add_argument("--key", action="append", help="an API key (repeat; dealt round-robin)")

    args = parser.parse_args()
    {"bare-server": run_bare_server, "profile-server": run_profile_server, "load": run_load}.get(
        args.command, run)(args)


if __name__ == "__main__":
    main()
