"""The gateway under sustained load: throughput, and the size of its SQLite write-ahead log, over one long run.

``benchmarks/gateway.py`` loads each server for a few seconds at a time; this script loads one gateway (the full
policy of its ``gateway-shared`` variant, on a fresh home) with ``--requests`` requests in one go, at 8
connections, pinned as there, and reads the audit database's files every second and right after the load::

    .venv/bin/python benchmarks/gateway_sustained.py                  # 30,000 requests; about a minute
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python benchmarks/gateway_sustained.py   # another version

The second form runs the same load against another checkout of bastion (for example an earlier commit in a
``git worktree``): the keys are created and the server is started with the ``bastion`` that ``PYTHONPATH`` names.
Results go to ``benchmarks/results/<--out>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench  # noqa: E402  (the servers, the load generator and the pinning of benchmarks/gateway.py)

RESULTS = Path(__file__).resolve().parent / "results"


def database_files(home: Path) -> dict[str, int]:
    """Sizes in bytes of the audit database's files in ``home`` (``bastion.db``, ``-wal``, ``-shm``)."""
    return {path.name: path.stat().st_size for path in home.iterdir() if path.name.startswith("bastion.db")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    weights, _ = bench.prepare_model(1)
    reference = bench.prepare_reference()
    bench.BASE_POLICY["memory_format"] = args.memory_format
    pinned = bench.pinning(args.pin)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        server = bench.gateway_server("gateway-shared", bench.FACTORY, weights, reference, work, args.keys).start()
        home = work / "gateway-shared"
        samples: list[dict[str, Any]] = []
        stop = threading.Event()

        def watch() -> None:
            started = time.monotonic()
            while not stop.wait(1.0):
                samples.append({"seconds": round(time.monotonic() - started, 1), **database_files(home)})

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            figures = bench.load(server, requests=args.requests, warmup=args.warmup, concurrency=args.concurrency,
                                 offset=0)
            after = database_files(home)
        finally:
            stop.set()
            watcher.join()
            server.stop()
    import bastion

    return {"bastion": str(Path(bastion.__file__).resolve().parent), "pinning": pinned,
            "requests": args.requests, "concurrency": args.concurrency, "throughput": round(figures["throughput"], 1),
            "server_cpu_us": figures.get("server_cpu_us"), "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"],
            "files_after_load": after, "largest_wal": max([s.get("bastion.db-wal", 0) for s in samples] + [0]),
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="channels_last")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="gateway_sustained")
    args = parser.parse_args()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "samples"}) + "\n")


if __name__ == "__main__":
    main()
