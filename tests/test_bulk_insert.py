"""SqliteBulkInsert writes what SQLAlchemy Core writes: the same values read back, the same audit chain."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from bastion.gateway.audit import AuditLog, PendingRecord, verify_audit
from bastion.storage.bulk_insert import SqliteBulkInsert, json_text
from bastion.storage.database import open_database
from bastion.storage.tables import AuditInputRow, AuditRecordRow
from gateway_support import write_records_before_0006


def _row(seq: int, **changes) -> dict:
    row = {"seq": seq, "request_id": f"req_{seq}", "time": datetime(2026, 11, 22, 19, 0, seq, 123456, timezone.utc),
           "key_id": None, "model": "m", "model_version": "1", "model_sha256": None, "policy_sha256": "p" * 64,
           "input_sha256": None, "scores": {"energy": [-7.25, 3.1e-05]}, "probabilities": None,
           "response": {"outputs": [{"data": [0.1, 1e-07, 0.9]}], "id": None, "text": "é ✓ \u2028"},
           "decision": "answer", "status": 200, "review_id": None, "batch": None, "prev_hash": "0" * 64,
           "entry_hash": f"{seq:064d}", "hash_format": 2}
    return {**row, **changes}


def _pending(index: int) -> PendingRecord:
    return PendingRecord(request_id=f"req_{index}", key_id="key_a", model="m", model_version="1", model_sha256=None,
                         policy_sha256="p" * 64, inputs=np.full((1, 4), index, np.float32), scores={},
                         probabilities=None, response={"outputs": []}, decision="answer", status=200)


def _read(database, *, without: tuple[str, ...] = ()) -> list[dict]:
    """Every audit record but its ``seq``, less the columns ``without`` (those a schema before the newest lacks)."""
    columns = [c for c in AuditRecordRow.__table__.columns if c.key != "seq" and c.key not in without]
    with database.engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(AuditRecordRow.seq)).all()
        return [dict(row._mapping) for row in rows]


def test_rows_read_back_as_core_writes_them(tmp_path):
    core, bulk = open_database(home=tmp_path / "core"), open_database(home=tmp_path / "bulk")
    rows = [_row(1), _row(2, key_id="key_a", probabilities=[[0.25, 0.75]], batch={"inputs": ["a"], "index": 0})]
    with core.engine.begin() as connection:
        connection.execute(insert(AuditRecordRow), rows)
    with bulk.engine.begin() as connection:
        SqliteBulkInsert(AuditRecordRow.__table__, bulk.engine.dialect).execute(connection, rows)
    assert _read(bulk) == _read(core)
    with core.engine.connect() as a, bulk.engine.connect() as b:  # None is stored as SQL NULL in the same columns
        query = "SELECT time, probabilities IS NULL, batch IS NULL, key_id IS NULL FROM audit_records ORDER BY seq"
        assert a.exec_driver_sql(query).all() == b.exec_driver_sql(query).all()


def test_skipping_duplicates_keeps_the_first_row(tmp_path):
    database = open_database(home=tmp_path)
    inputs = SqliteBulkInsert(AuditInputRow.__table__, database.engine.dialect, skip_duplicates_of="sha256")
    with database.engine.begin() as connection:
        inputs.execute(connection, [{"sha256": "a", "dtype": "<f4", "shape": [1, 2], "data": b"12345678"}])
        inputs.execute(connection, [{"sha256": "a", "dtype": "<f8", "shape": [1], "data": b"x"},
                                    {"sha256": "b", "dtype": "<f4", "shape": [1], "data": b"1234"}])
        inputs.execute(connection, [])
    with database.sessions() as session:
        stored = {row.sha256: (row.dtype, row.shape, row.data) for row in session.scalars(select(AuditInputRow))}
    assert stored == {"a": ("<f4", [1, 2], b"12345678"), "b": ("<f4", [1], b"1234")}


def test_bad_rows_and_other_databases_are_refused(tmp_path):
    database = open_database(home=tmp_path)
    records = SqliteBulkInsert(AuditRecordRow.__table__, database.engine.dialect)
    row = _row(1)
    del row["decision"]
    with database.engine.begin() as connection, pytest.raises(KeyError, match="decision"):
        records.execute(connection, [row])
    with pytest.raises(ValueError, match="SQLite, not postgresql"):
        SqliteBulkInsert(AuditRecordRow.__table__, postgresql.dialect())
    other = open_database(home=tmp_path / "other")
    with other.engine.begin() as connection, pytest.raises(ValueError, match="make one per engine"):
        records.execute(connection, [_row(1)])


def test_refusals_are_sqlalchemy_errors_and_roll_the_group_back(tmp_path):
    database = open_database(home=tmp_path)
    records = SqliteBulkInsert(AuditRecordRow.__table__, database.engine.dialect)
    with database.engine.begin() as connection:
        records.execute(connection, [_row(1)])
    with pytest.raises(IntegrityError, match="UNIQUE"), database.engine.begin() as connection:
        records.execute(connection, [_row(2), _row(1, entry_hash="f" * 64)])  # seq 1 again
    assert [row["request_id"] for row in _read(database)] == ["req_1"]


def test_two_writers_on_one_file_retry_after_a_conflict(tmp_path):
    """Gateway workers sharing one SQLite file each keep their own head: a stale one is re-read and retried."""
    first, second = (AuditLog(open_database(home=tmp_path, sync_every_commit=False), sync=False) for _ in range(2))
    first.start()
    second.start()
    assert first.write([_pending(1)]) == [1] and second.write([_pending(2)]) == [2]
    assert first.write([_pending(3)]) == [3]  # its head said 1: the conflict on seq 2 makes it read the head again
    with first.database.sessions() as session:
        check = verify_audit(session, anchor=None)
    assert check.ok and check.checked == 3


def test_json_text_falls_back_for_types_orjson_lacks():
    assert json_text({"a": np.float64(0.5), "b": None}) == '{"a": 0.5, "b": null}'
    assert json_text(None) == "null"
    assert json_text([1e-07]) == "[1e-7]"


def test_the_audit_chain_written_in_bulk_verifies(tmp_path):
    database = open_database(home=tmp_path, sync_every_commit=False)
    log = AuditLog(database, sync=False)
    log.start()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    records = [PendingRecord(request_id=f"req_{i}", key_id="key_a", model="m", model_version="1", model_sha256=None,
                             policy_sha256="p" * 64, inputs=x if i < 2 else x + 1, scores={"energy": [1e-05 * i]},
                             probabilities=[[0.1 * i, 1 - 0.1 * i]], response={"outputs": [], "id": None},
                             decision="answer", status=200) for i in range(3)]
    assert log.write(records[:2]) == [1, 2] and log.write(records[2:]) == [3]
    log.close()
    with database.sessions() as session:
        check = verify_audit(session, anchor=tmp_path / "audit.head")
        assert check.ok and check.checked == 3
        assert session.query(AuditInputRow).count() == 2  # the repeated input is stored once


def test_the_entry_hash_index_is_dropped_from_an_existing_log_which_still_verifies(tmp_path):
    """Migration 0005 on a log written under 0004: same records, chain intact, the other indexes kept."""
    from sqlalchemy import inspect

    from bastion.storage.database import upgrade_schema

    old = open_database(home=tmp_path, upgrade=False)
    upgrade_schema(old.engine, "0004")
    assert any(c["column_names"] == ["entry_hash"] for c in inspect(old.engine).get_unique_constraints("audit_records"))
    write_records_before_0006(old, [_pending(index) for index in range(5)])
    before = _read(old, without=("hash_format",))
    old.engine.dispose()

    database = open_database(home=tmp_path)  # upgrades to the newest schema
    schema = inspect(database.engine)
    assert not any(c["column_names"] == ["entry_hash"] for c in schema.get_unique_constraints("audit_records"))
    assert any(c["column_names"] == ["request_id"] for c in schema.get_unique_constraints("audit_records"))
    assert {index["name"] for index in schema.get_indexes("audit_records")} >= {"ix_audit_records_time",
                                                                                "ix_audit_records_key_id"}
    assert _read(database, without=("hash_format",)) == before
    log = AuditLog(database, sync=False)
    log.start()
    assert log.write([_pending(5)]) == [6]
    with database.sessions() as session:
        check = verify_audit(session, anchor=tmp_path / "audit.head")
    assert check.ok and check.checked == 6, check.problems
