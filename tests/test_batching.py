"""Micro-batching: concurrent requests share a forward pass, each is decided on its own rows, a failed batch
fails no one else, and a batched request replays bit for bit from its logged batch."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest
import torch

from bastion.gateway.app import create_app
from bastion.gateway.audit import audit_anchor, verify_audit
from bastion.gateway.batching import MicroBatcher
from bastion.gateway.pipeline import PolicyPipeline
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.replay import replay
from bastion.gateway.settings import GatewaySettings
from bastion.models.loading import load_classifier
from bastion.storage.database import open_database
from bastion.storage.tables import AuditRecordRow
from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key

INFER = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def loaded(digits_weights):
    return load_classifier("bastion.models.zoo:digits_cnn", weights=digits_weights)


@pytest.fixture(scope="module")
def pipeline(loaded, digits_arrays):
    x, _ = digits_arrays
    return PolicyPipeline(loaded.classifier, policy_from_dict(POLICY), reference=torch.from_numpy(x[:600]))


def test_a_batch_decides_each_request_on_its_own_rows(pipeline, digits_arrays):
    x, _ = digits_arrays
    noise = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 16
    inputs = [torch.from_numpy(x[1500:1502]), noise, torch.from_numpy(x[1502:1503])]
    batched = pipeline.evaluate_batch(inputs)
    alone = [pipeline.evaluate(tensor) for tensor in inputs]
    assert [e.probabilities.shape[0] for e in batched] == [2, 1, 1]
    for together, single in zip(batched, alone, strict=True):
        assert together.decision == single.decision and together.flagged == single.flagged
        assert torch.allclose(together.probabilities, single.probabilities, atol=1e-5)
    assert batched[1].decision != "answer" and batched[0].decision == "answer"
    assert pipeline.evaluate_batch(inputs)[1].probabilities.equal(batched[1].probabilities)  # same batch, same bits


def test_the_batcher_groups_one_loop_turn_and_splits_at_max_instances(pipeline, digits_arrays):
    x, _ = digits_arrays
    batcher = MicroBatcher(max_instances=4)

    async def send_all():
        tensors = [torch.from_numpy(x[i:i + 1]) for i in range(6)]
        return await asyncio.gather(*(batcher.evaluate(pipeline, t, f"digest-{i}") for i, t in enumerate(tensors)))

    answers = asyncio.run(send_all())
    slots = [slot for _, slot in answers]
    assert [s.inputs for s in slots[:4]] == [[f"digest-{i}" for i in range(4)]] * 4
    assert [s.index for s in slots] == [0, 1, 2, 3, 0, 1]
    assert slots[4].inputs == ["digest-4", "digest-5"]
    with pytest.raises(ValueError, match="at least 2"):
        MicroBatcher(max_instances=1)


def test_a_failed_batch_runs_each_request_alone(pipeline, digits_arrays, monkeypatch):
    x, _ = digits_arrays
    batcher = MicroBatcher()

    def broken(inputs):
        raise RuntimeError("the batched pass broke")

    monkeypatch.setattr(pipeline, "evaluate_batch", broken)

    async def send_two():
        return await asyncio.gather(batcher.evaluate(pipeline, torch.from_numpy(x[:1]), "a"),
                                    batcher.evaluate(pipeline, torch.from_numpy(x[1:2]), "b"))

    answers = asyncio.run(send_two())
    assert [slot for _, slot in answers] == [None, None]
    assert all(evaluation.probabilities.shape == (1, 10) for evaluation, _ in answers)


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_concurrent_requests_share_a_pass_and_replay_bit_for_bit(tmp_path, loaded, digits_arrays, memory_format):
    x, _ = digits_arrays
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=tmp_path, model_name="digits",
                               default_rate=None, default_budget=None, key_cache_seconds=0)
    policy = policy_from_dict({**POLICY, "memory_format": memory_format})  # replay reads the layout from the policy
    with LiveServer(create_app(settings, loaded=loaded, policy=policy)) as server:
        _, key = make_key(tmp_path)

        async def burst():
            async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                                         timeout=30) as client:
                return await asyncio.gather(*(client.post(INFER, json=infer_body(x[1500 + i:1501 + i]))
                                              for i in range(24)))

        answers = asyncio.run(burst())
    assert {a.status_code for a in answers} <= {200, 202}
    with open_database(home=tmp_path) as database, database.sessions() as session:
        records = session.query(AuditRecordRow).order_by(AuditRecordRow.seq).all()
        batched = [r for r in records if r.batch is not None]
        assert batched and max(len(r.batch["inputs"]) for r in batched) > 1
        for record in batched[:6]:
            assert record.batch["inputs"][record.batch["index"]] == record.input_sha256
            assert replay(session, record.request_id, loaded=loaded).identical
        assert verify_audit(session, anchor=audit_anchor(database)).ok
        target = batched[0]
    with sqlite3.connect(tmp_path / "bastion.db") as connection:  # move the request to another place in its batch
        index = (target.batch["index"] + 1) % len(target.batch["inputs"])
        connection.execute("UPDATE audit_records SET batch = json_set(batch, '$.index', ?) WHERE seq = ?",
                           (index, target.seq))
    with open_database(home=tmp_path) as database, database.sessions() as session:
        problems = verify_audit(session, anchor=audit_anchor(database)).problems
    assert [p.seq for p in problems] == [target.seq]


def test_records_written_before_the_batch_column_still_verify(tmp_path):
    from datetime import datetime, timezone

    from sqlalchemy import text

    from bastion.gateway.audit import HASHED_FIELDS, record_hash
    from bastion.storage.database import upgrade_schema
    from bastion.storage.ledger import GENESIS_HASH

    database = open_database(home=tmp_path, upgrade=False)
    upgrade_schema(database.engine, "0002")
    fields = {"seq": 1, "request_id": "req_old", "time": datetime(2026, 11, 1, tzinfo=timezone.utc), "key_id": None,
              "model": "m", "model_version": "1", "model_sha256": None, "policy_sha256": "p" * 64,
              "input_sha256": None, "scores": {}, "probabilities": None, "response": {"error": "invalid_input"},
              "decision": "invalid", "status": 422, "review_id": None, "prev_hash": GENESIS_HASH}
    row = {**fields, "entry_hash": record_hash(fields)}
    with database.engine.begin() as connection:
        columns = [*HASHED_FIELDS, "entry_hash"]
        values = {k: (json.dumps(v) if k in ("scores", "probabilities", "response") else v) for k, v in row.items()}
        values["time"] = "2026-11-01 00:00:00.000000"
        connection.execute(text(f"INSERT INTO audit_records ({', '.join(columns)}) VALUES "
                                f"({', '.join(':' + c for c in columns)})"), values)
    database.dispose()
    with open_database(home=tmp_path) as upgraded, upgraded.sessions() as session:  # upgrades to the newest schema
        assert session.get(AuditRecordRow, 1).batch is None
        assert verify_audit(session, anchor=None).ok


def test_a_pass_waits_for_requests_in_flight_and_a_first_lone_one_runs_at_once(pipeline, digits_arrays):
    x, _ = digits_arrays
    tensors = [torch.from_numpy(x[i:i + 1]) for i in range(3)]

    async def staggered(batcher, in_flight):
        first = asyncio.ensure_future(batcher.evaluate(pipeline, tensors[0], "a", in_flight=in_flight))
        await asyncio.sleep(0.01)  # past a 1 ms wait: the first pass has run alone
        rest = [batcher.evaluate(pipeline, t, d, in_flight=in_flight) for t, d in zip(tensors[1:], "bc", strict=True)]
        return [await first, *await asyncio.gather(*rest)]

    alone = asyncio.run(staggered(MicroBatcher(wait_seconds=0.001), in_flight=1))
    assert [slot for _, slot in alone][0] is None and alone[1][1].inputs == ["b", "c"]

    async def joined(batcher):
        first = asyncio.ensure_future(batcher.evaluate(pipeline, tensors[0], "a", in_flight=3))
        await asyncio.sleep(0)  # the loop turns: a pass on call_soon would run now, a waiting one does not
        await asyncio.sleep(0)
        rest = [batcher.evaluate(pipeline, t, d, in_flight=3) for t, d in zip(tensors[1:], "bc", strict=True)]
        return await asyncio.gather(first, *rest)

    together = asyncio.run(joined(MicroBatcher(wait_seconds=0.5)))  # the third arrival runs it, long before 0.5 s
    assert [slot.inputs for _, slot in together] == [["a", "b", "c"]] * 3
    with pytest.raises(ValueError, match="wait_seconds"):
        MicroBatcher(wait_seconds=-1)


def test_a_lone_arrival_waits_for_as_many_requests_as_the_recent_passes_held(pipeline, digits_arrays):
    """Concurrent clients that send on an answer: the first next request finds nobody else in flight yet. Run at
    once, it would split the traffic into alternating passes (1 and 7 of 8 clients, for whole runs)."""
    x, _ = digits_arrays
    tensors = [torch.from_numpy(x[i:i + 1]) for i in range(3)]

    async def turns(count: int = 10) -> None:
        for _ in range(count):
            await asyncio.sleep(0)

    async def pass_of_three(batcher):
        await asyncio.gather(*(batcher.evaluate(pipeline, t, d, in_flight=3) for t, d in zip(tensors, "abc",
                                                                                             strict=True)))

    async def wave(batcher):
        await pass_of_three(batcher)
        lone = asyncio.ensure_future(batcher.evaluate(pipeline, tensors[0], "d", in_flight=1))
        await turns()
        waited = not lone.done()  # a pass on call_soon would have run by now
        rest = await asyncio.gather(*(batcher.evaluate(pipeline, t, d, in_flight=2) for t, d in zip(tensors[1:], "ef",
                                                                                                   strict=True)))
        return waited, [(await lone)[1], *(slot for _, slot in rest)]

    waited, slots = asyncio.run(wave(MicroBatcher(wait_seconds=0.5)))  # the third arrival runs it
    assert waited and [slot.inputs for slot in slots] == [["d", "e", "f"]] * 3

    async def then_alone(batcher):
        await pass_of_three(batcher)
        first = asyncio.ensure_future(batcher.evaluate(pipeline, tensors[0], "in-vain", in_flight=1))
        await turns()
        waited = not first.done()
        await first  # its 10 ms run out with nobody else: the recent passes are forgotten
        second = asyncio.ensure_future(batcher.evaluate(pipeline, tensors[0], "at-once", in_flight=1))
        await turns()
        return waited, second.done()

    assert asyncio.run(then_alone(MicroBatcher(wait_seconds=0.01))) == (True, True)


def test_the_request_values_are_released_once_converted(tmp_path, loaded, digits_arrays, monkeypatch):
    """Freed after the pass and the audit write, concurrent requests' parsed floats cost the gateway CPU."""
    x, _ = digits_arrays
    received = []
    convert = PolicyPipeline.tensor

    def spy(self, shape, datatype, data):
        received.append(data)
        return convert(self, shape, datatype, data)

    monkeypatch.setattr(PolicyPipeline, "tensor", spy)
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=tmp_path, model_name="digits",
                               default_rate=None, default_budget=None, key_cache_seconds=0)
    with LiveServer(create_app(settings, loaded=loaded, policy=policy_from_dict(POLICY))) as server:
        _, key = make_key(tmp_path)
        with server.client(key) as client:
            fast = client.post(INFER, json=infer_body(x[1500:1501]))
            lax = infer_body(x[1500:1501])
            lax["inputs"][0]["shape"][-1] = 8.0  # not the plain form: FastAPI's route answers it, not the fast path
            routed = client.post(INFER, json=lax)
            simple = client.post("/predict", json={"instances": x[1500:1501].tolist()})
    assert [fast.status_code, routed.status_code, simple.status_code] == [200, 200, 200]
    assert fast.json()["outputs"] == routed.json()["outputs"]
    assert len(received) == 3 and all(isinstance(data, list) and data == [] for data in received)


@pytest.mark.parametrize("wait", [-1, 101])
def test_a_batch_wait_out_of_range_is_refused(tmp_path, wait):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="batch_wait_ms"):
        GatewaySettings(environment="test", secret_key=SECRET, home=tmp_path, batch_wait_ms=wait)
