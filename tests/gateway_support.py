"""Helpers for the gateway tests: a real uvicorn server on loopback in a thread, and key creation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from bastion.gateway.keys import create_key
from bastion.storage.database import open_database

SECRET = "test-secret-0123456789-abcdefghijklmnop"
POLICY = {
    "reference": "digits:train",
    "reference_limit": 600,
    "detectors": [{"kind": "energy", "false_positive_rate": 0.02}, {"kind": "squeeze", "false_positive_rate": 0.02}],
    "decision": {"flag_at": 1, "review_at": 2, "review_below_confidence": 0.3},
}


class LiveServer:
    """``app`` served by uvicorn on 127.0.0.1 at a free port, in a daemon thread."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def make_key(home: Path, *, role: str = "client", **options) -> tuple[str, str]:
    """A new key in the gateway database under ``home``: ``(key id, key)``."""
    with open_database(home=home) as database, database.transaction() as session:
        row, key = create_key(session, secret=SECRET, name=options.pop("name", f"{role}-key"), role=role,
                              actor="test", **options)
        return row.id, key


def infer_body(x) -> dict:
    """An OIP v2 request for ``x`` ``(N, 1, 8, 8)``."""
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}


def uncertain_input(loaded, digits_arrays) -> np.ndarray:
    """The blend of two digits the model is least sure of (below the policy's 0.3 confidence)."""
    import torch

    x, _ = digits_arrays
    weights = torch.linspace(0.3, 0.7, 17).view(-1, 1, 1, 1, 1)
    blends = (weights * torch.from_numpy(x[1400:1597]) + (1 - weights) * torch.from_numpy(x[1600:1797]))
    blends = blends.reshape(-1, 1, 8, 8)
    confidence = torch.softmax(loaded.classifier.logits(blends), dim=1).max(dim=1).values
    assert confidence.min() < 0.3
    return blends[confidence.argmin()][None].numpy()


def write_records_before_0006(database, records: list, *, seq: int = 1, prev_hash: str | None = None) -> str:
    """Append ``records`` (``PendingRecord``s, inputs not stored) as a gateway before migration 0006 wrote them:
    no ``hash_format`` column, every hash in the first format. The last record's ``entry_hash``."""
    from sqlalchemy import Column, MetaData, Table, insert

    from bastion.gateway import audit
    from bastion.storage.ledger import GENESIS_HASH
    from bastion.storage.tables import AuditRecordRow

    table = Table("audit_records", MetaData(),
                  *[Column(column.name, column.type) for column in AuditRecordRow.__table__.columns
                    if column.name != "hash_format"])
    prev_hash = prev_hash or GENESIS_HASH
    rows = []
    for offset, record in enumerate(records):
        row = audit._row(record, seq + offset, prev_hash)  # noqa: SLF001 - the fields a gateway writes
        del row["hash_format"], row["entry_hash"]
        row["entry_hash"] = prev_hash = audit.record_hash(row)
        rows.append(row)
    with database.engine.begin() as connection:
        connection.execute(insert(table), rows)
    return prev_hash
