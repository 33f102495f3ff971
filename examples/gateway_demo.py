"""The gateway story of ``make demo``, run as a user would run it: the ``bastion`` CLI and HTTP requests.

It serves the demo's digits CNN with ``examples/policy.yaml`` on a free loopback port (state in
``demo/gateway/.bastion``), creates a client and a reviewer key, sends ordinary test digits, noise, a
PGD adversarial digit and a blend of two digits, lets the reviewer decide the escalated request, replays
one prediction with ``bastion replay``, checks the audit chain with ``bastion audit verify``, writes the
drift report with ``bastion monitor report`` and stops the gateway. Each step prints one line.

    python examples/gateway_demo.py --weights demo/digits_cnn.safetensors --out demo/gateway
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import torch

from bastion.attacks import ATTACKS
from bastion.core.threat import ThreatModel
from bastion.data.sources import load_dataset
from bastion.models.loading import load_classifier

MODEL = "bastion.models.zoo:digits_cnn"
BIN = Path(sys.executable).parent / "bastion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="demo/digits_cnn.safetensors")
    parser.add_argument("--policy", default=str(Path(__file__).parent / "policy.yaml"))
    parser.add_argument("--out", default="demo/gateway")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "BASTION_HOME": str(out / ".bastion"), "BASTION_USER": "demo"}
    port = free_port()
    server = subprocess.Popen([str(BIN), "serve", "--model", MODEL, "--weights", args.weights, "--policy", args.policy,
                               "--name", "digits", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server)
        client_key = cli(env, "keys", "create", "--name", "demo-client", "--rate", "600/minute")
        reviewer_key = cli(env, "keys", "create", "--name", "demo-reviewer", "--role", "reviewer")
        requests = demo_requests(args.weights)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {client_key}"}, timeout=30) as client:
            answers = {name: [client.post("/v2/models/digits/infer", json=body) for body in bodies]
                       for name, bodies in requests.items()}
        for name, replies in answers.items():
            decisions = Counter(decision(reply) for reply in replies)
            print(f"{name:28s} " + ", ".join(f"{count} {what}" for what, count in sorted(decisions.items())))
        review(url, reviewer_key, client_key, answers)
        answered = next(r for r in answers["test digits"] if r.status_code == 200)
        request_id = answered.headers["x-request-id"]
        print(cli(env, "replay", request_id, "--model", MODEL, "--weights", args.weights).replace("\n", "; "))
        print(cli(env, "audit", "verify"))
        cli(env, "monitor", "report", "--out", str(out / "drift"))
        print(f"drift report: {out / 'drift' / 'drift.html'}")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"bastion serve stopped with exit code {server.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("bastion serve did not become ready in 120 s")


def cli(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run([str(BIN), *arguments], env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"bastion {' '.join(arguments)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def demo_requests(weights: str) -> dict[str, list[dict]]:
    """One-image requests: 100 test digits, 5 noise images, 20 PGD adversarial digits, 5 blends."""
    test = load_dataset("digits:test")
    x, y = torch.from_numpy(test.x[:100]), torch.from_numpy(test.y[:100])
    model = load_classifier(MODEL, weights=weights).classifier
    threat = ThreatModel(norm="linf", eps=0.2)
    adversarial = ATTACKS.create("pgd")(model, x[:20], y[:20], threat, seed=0).x_adv
    noise = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    blends = 0.5 * x[20:25] + 0.5 * x[25:30]
    groups = {"test digits": x, "uniform noise": noise, "PGD digits (eps 0.2)": adversarial,
              "blends of two digits": blends}
    return {name: [body(sample[None].numpy()) for sample in images] for name, images in groups.items()}


def body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}


def decision(reply: httpx.Response) -> str:
    if reply.status_code == 202:
        return "escalated to review"
    if reply.status_code != 200:
        return f"HTTP {reply.status_code} {reply.json().get('error')}"
    return {"answer": "answered", "flag": "answered and flagged"}[reply.json()["parameters"]["decision"]]


def review(url: str, reviewer_key: str, client_key: str, answers: dict[str, list[httpx.Response]]) -> None:
    pending = [r.json()["review_id"] for replies in answers.values() for r in replies if r.status_code == 202]
    if not pending:
        print("review: nothing was escalated")
        return
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {reviewer_key}"}) as reviewer:
        queue = reviewer.get("/v2/reviews").json()
        reviewer.post(f"/v2/reviews/{pending[0]}/decision", json={"action": "refuse", "note": "not a digit"})
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {client_key}"}) as client:
        status = client.get(f"/v2/reviews/{pending[0]}").json()["status"]
    print(f"review: {len(queue)} case(s) pending; the reviewer refused {pending[0]}, the client now sees "
          f"'{status}' (the console at {url}/console shows the same queue)")


if __name__ == "__main__":
    main()
