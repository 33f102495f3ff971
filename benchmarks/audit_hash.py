"""The audit log's record hash, in each format, on a record shaped like the gateway's (in-process, one thread).

A gateway record of a Fashion-MNIST request: ten float32 probabilities (in ``probabilities`` and again in the
response), two detector scores, the output policy's parameters, and the batch of eight input hashes it shared a
forward pass with. Each format's ``record_hash`` is timed over ``--repeat`` calls, ``--rounds`` times, formats
alternating; the median per call is reported::

    .venv/bin/python benchmarks/audit_hash.py            # results/audit_hash.json, a few seconds

Formats (``bastion.gateway.audit.HASH_FORMATS``): ``None``, the standard library's canonical JSON (every record
before migration 0006); ``2``, orjson with sorted keys (new records).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bastion.gateway.audit import HASH_FORMAT, HASH_FORMATS, record_hash
from bastion.storage.ledger import GENESIS_HASH

RESULTS = Path(__file__).resolve().parent / "results"


def gateway_record(seed: int = 0) -> dict:
    """The hashed fields of one gateway record (see the module docstring)."""
    rng = np.random.default_rng(seed)
    probabilities = [float(p) for p in rng.dirichlet(np.ones(10)).astype(np.float32)]
    digests = [f"{int(d):064x}" for d in rng.integers(0, 2**62, size=8)]
    return {"seq": 123456, "request_id": "req_0193a0b1c2d3" + "4e5f60718293a4b5", "key_id": "key_5574b407ba567eff",
            "time": datetime(2026, 11, 23, 23, 30, 1, 250000, timezone.utc), "model": "fashion", "model_version": "1",
            "model_sha256": "a" * 64, "policy_sha256": "b" * 64, "input_sha256": digests[3],
            "scores": {"energy": [-4.860000133514404], "confidence": [max(probabilities)]},
            "probabilities": [probabilities],
            "response": {"model_name": "fashion", "model_version": "1", "id": None,
                         "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 10],
                                      "data": probabilities},
                                     {"name": "label", "datatype": "INT64", "shape": [1],
                                      "data": [int(np.argmax(probabilities))]}],
                         "parameters": {"request_id": "req_x", "decision": "answer", "output_policy": "full"}},
            "decision": "answer", "status": 200, "review_id": None, "batch": {"inputs": digests, "index": 3},
            "prev_hash": GENESIS_HASH}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5000, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default="audit_hash")
    args = parser.parse_args()
    record = gateway_record()
    timings: dict[str, list[float]] = {str(f): [] for f in HASH_FORMATS}
    for _ in range(args.rounds):
        for hash_format in HASH_FORMATS:
            fields = {**record, "hash_format": hash_format}
            seconds = timeit.timeit(lambda fields=fields: record_hash(fields), number=args.repeat)
            timings[str(hash_format)].append(1e6 * seconds / args.repeat)
    medians = {name: round(statistics.median(values), 2) for name, values in timings.items()}
    result = {"benchmark": "audit_hash", "issue": 6, "settings": vars(args), "new_records_format": HASH_FORMAT,
              "median_us_per_record": medians, "rounds_us": {k: [round(v, 2) for v in vs] for k, vs in timings.items()},
              "speedup_of_new_format": round(medians["None"] / medians[str(HASH_FORMAT)], 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, median in medians.items():
        print(f"format {name:4s} ({HASH_FORMATS[None if name == 'None' else int(name)]}): {median} µs a record")
    print(f"written to {RESULTS / (args.out + '.json')}")


if __name__ == "__main__":
    main()
