"""The audit log's hash formats: the first (standard-library canonical JSON) for records before migration 0006,
orjson's for new ones; both verify in one chain, and an edit on either side is found."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import select, text

from bastion.gateway.audit import AuditLog, PendingRecord, record_hash, verify_audit
from bastion.storage.database import open_database, upgrade_schema
from bastion.storage.ledger import GENESIS_HASH
from bastion.storage.tables import AuditRecordRow
from gateway_support import write_records_before_0006

FIELDS = {"seq": 7, "request_id": "req_0192a3b4c5d6e7f8a9b0c1d2e3f4", "key_id": "key_a",
          "time": datetime(2026, 11, 23, 23, 30, 1, 250000, timezone.utc), "model": "fashion", "model_version": "1",
          "model_sha256": "a" * 64, "policy_sha256": "b" * 64, "input_sha256": "c" * 64,
          "scores": {"energy": [-4.860000133514404], "confidence": [0.9999998807907104]},
          "probabilities": [[1e-07, 5e-05, 0.1, 0.8999500870704651, 1.0, 0.0, 123456789.0, 1e22, -0.0, 2.5e-310]],
          "response": {"outputs": [{"data": [1e-07, 0.1]}], "id": None, "text": "é ✓ \u2028 \"q\""},
          "decision": "answer", "status": 200, "review_id": None, "batch": {"inputs": ["c" * 64], "index": 0},
          "prev_hash": GENESIS_HASH}


def _pending(index: int, **changes) -> PendingRecord:
    fields = {"request_id": f"req_{index:04d}", "key_id": "key_a", "model": "m", "model_version": "1",
              "model_sha256": None, "policy_sha256": "p" * 64, "inputs": np.full((1, 4), index, np.float32),
              "scores": {"energy": [-7.25 + index]}, "probabilities": [[0.25, 0.75]],
              "response": {"outputs": [{"data": [0.25, 0.75]}]}, "decision": "answer", "status": 200}
    return PendingRecord(**{**fields, **changes})


def test_a_record_hash_is_pinned_in_each_format():
    """If an orjson release spelled a number otherwise, format-2 records would stop verifying: this fails first."""
    import orjson

    assert orjson.dumps(FIELDS["probabilities"]) == (
        b"[[1e-7,0.00005,0.1,0.8999500870704651,1.0,0.0,123456789.0,1e+22,-0.0,2.5e-310]]")
    assert record_hash(FIELDS) == record_hash({**FIELDS, "hash_format": None}) == (
        "c77b48a05e08e81d13125ae2df9bb997921e28be51d94db8662e1ed76fc77ab5")
    assert record_hash({**FIELDS, "hash_format": 2}) == (
        "c93123bbb1e0c48fc6c5b2b7d4acb01dd7aed3c7084c614a716949fc1c88a06b")


def test_an_unknown_format_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown audit hash_format 3; known: None \(standard-library"):
        record_hash({**FIELDS, "hash_format": 3})


def test_a_log_from_before_0006_goes_on_in_the_new_format_and_edits_on_either_side_are_found(tmp_path):
    old = open_database(home=tmp_path, upgrade=False)
    upgrade_schema(old.engine, "0005")
    write_records_before_0006(old, [_pending(index) for index in range(3)])
    old.engine.dispose()

    database = open_database(home=tmp_path)  # upgrades to the newest schema
    log = AuditLog(database, sync=False)
    log.start()
    assert log.write([_pending(index) for index in range(3, 6)]) == [4, 5, 6]
    with database.sessions() as session:
        formats = session.scalars(select(AuditRecordRow.hash_format).order_by(AuditRecordRow.seq)).all()
        assert formats == [None, None, None, 2, 2, 2]
        check = verify_audit(session, anchor=tmp_path / "audit.head")
        assert check.ok and check.checked == 6, check.problems

    def problems_after(statement: str) -> list[tuple[int, str]]:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("SAVEPOINT edit")
            connection.exec_driver_sql(statement)
            with database.sessions(bind=connection) as session:
                found = [(p.seq, p.problem) for p in verify_audit(session, anchor=None).problems]
            connection.exec_driver_sql("ROLLBACK TO edit")
        return found

    for seq in (2, 5):  # a score edited in a record of each format
        found = problems_after(f"UPDATE audit_records SET scores = '{{\"energy\": [0.5]}}' WHERE seq = {seq}")
        assert [s for s, _ in found] == [seq] and "entry_hash" in found[0][1]
    found = problems_after("UPDATE audit_records SET hash_format = NULL WHERE seq = 5")  # the format is hashed too
    assert [s for s, _ in found] == [5]
    found = problems_after("UPDATE audit_records SET hash_format = 9 WHERE seq = 2")
    assert [s for s, _ in found] == [2] and "cannot be recomputed (unknown audit hash_format 9" in found[0][1]
    with database.sessions() as session:
        assert verify_audit(session, anchor=tmp_path / "audit.head").ok


def test_what_orjson_cannot_write_is_hashed_in_the_first_format(tmp_path):
    database = open_database(home=tmp_path)
    log = AuditLog(database, sync=False)
    log.start()
    log.write([_pending(0, scores={10: [0.5], 9: [0.25]}), _pending(1, response={"n": 2 ** 70}), _pending(2)])
    with database.sessions() as session:
        rows = session.scalars(select(AuditRecordRow).order_by(AuditRecordRow.seq)).all()
        assert [row.hash_format for row in rows] == [None, None, 2]
        assert rows[0].scores == {"10": [0.5], "9": [0.25]} and rows[1].response == {"n": 2 ** 70}
        assert verify_audit(session, anchor=tmp_path / "audit.head").ok


def test_non_finite_numbers_are_logged_as_null_and_verify(tmp_path):
    """A model that answers NaN is logged as the client saw it (JSON has no NaN), not a failed write."""
    database = open_database(home=tmp_path)
    log = AuditLog(database, sync=False)
    log.start()
    log.write([_pending(0, probabilities=[[math.nan, math.inf]])])
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT probabilities FROM audit_records")).scalar() == "[[null,null]]"
    with database.sessions() as session:
        assert session.get(AuditRecordRow, 1).probabilities == [[None, None]]
        assert verify_audit(session, anchor=tmp_path / "audit.head").ok


def test_a_null_edited_into_nan_or_infinity_is_found(tmp_path):
    """SQLite's JSON reader takes NaN and Infinity, which format 2 would hash as the null it stored: verify refuses
    them in such a record instead."""
    database = open_database(home=tmp_path)
    log = AuditLog(database, sync=False)
    log.start()
    log.write([_pending(0, scores={"energy": [math.nan]}),
               _pending(1, response={"id": None, "outputs": [{"data": [0.25, 0.75]}]}), _pending(2)])
    with database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_records SET scores = '{\"energy\": [Infinity]}' WHERE seq = 1")
        assert connection.exec_driver_sql("SELECT hash_format FROM audit_records WHERE seq = 1").scalar() == 2
        connection.exec_driver_sql("UPDATE audit_records SET response = '{\"id\": NaN, \"outputs\": "
                                   "[{\"data\": [0.25, 0.75]}]}' WHERE seq = 2")
    with database.sessions() as session:
        problems = verify_audit(session, anchor=tmp_path / "audit.head").problems
    assert [p.seq for p in problems] == [1, 2] and all("NaN or an infinity" in p.problem for p in problems)


def test_an_orjson_that_spells_numbers_otherwise_writes_the_first_format_and_says_why_it_cannot_check(
        tmp_path, monkeypatch):
    from bastion.gateway import audit

    database = open_database(home=tmp_path)
    log = AuditLog(database, sync=False)
    log.start()
    log.write([_pending(0)])  # format 2
    assert audit.orjson_spells_format_2()
    monkeypatch.setattr(audit, "SPELLING", audit.SPELLING.replace(b"1e+22", b"1e22"))  # as orjson 3.11.0 wrote
    audit.orjson_spells_format_2.cache_clear()
    try:
        log.write([_pending(1)])
        with database.sessions() as session:
            assert session.get(AuditRecordRow, 2).hash_format is None
            problems = verify_audit(session, anchor=tmp_path / "audit.head").problems
        assert [p.seq for p in problems] == [1] and "install orjson>=3.11.9" in problems[0].problem
        assert "was edited" not in problems[0].problem
    finally:
        audit.orjson_spells_format_2.cache_clear()


def test_a_dataclass_in_a_record_is_refused_as_before(tmp_path):
    from dataclasses import dataclass as make_dataclass

    @make_dataclass
    class Score:
        zeta: float
        alpha: float

    log = AuditLog(open_database(home=tmp_path), sync=False)
    log.start()
    with pytest.raises(TypeError, match="not JSON serializable"):
        log.write([_pending(0, scores={"energy": Score(0.5, 0.25)})])


def test_downgrading_below_0006_is_refused_once_a_record_has_a_format(tmp_path):
    from alembic import command
    from alembic.config import Config

    from bastion.storage.database import MIGRATIONS

    database = open_database(home=tmp_path)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:  # an empty log may go down and up again
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    upgrade_schema(database.engine)
    log = AuditLog(database, sync=False)
    log.start()
    log.write([_pending(0)])
    with database.engine.begin() as connection, pytest.raises(RuntimeError, match="1 audit records are hashed"):
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with database.sessions() as session:
        assert verify_audit(session, anchor=tmp_path / "audit.head").ok
