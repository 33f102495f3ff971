"""The storage layer: the hash-chained ledger (every kind of tampering found and located, including
through raw SQL on the SQLite file), the database and its migrations, and the object store."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bastion.core.errors import InputError
from bastion.storage import (
    CorruptObjectError,
    MissingObjectError,
    ObjectStore,
    append,
    current_actor,
    database_url,
    open_database,
    verify,
)
from bastion.storage.ledger import GENESIS_HASH, entry_hash, reanchor
from bastion.storage.tables import Base

ENTRIES = 5


@pytest.fixture
def database(tmp_path):
    database = open_database(home=tmp_path)
    for i in range(1, ENTRIES + 1):
        with database.transaction() as session:
            append(session, action="dataset.commit", subject="dataset:train", actor=f"user{i}",
                   payload={"version": i, "note": "naïve café", "ratio": i / 3})
    yield database
    database.dispose()


def sql(tmp_path: Path, statement: str, *params: object) -> None:
    """Run one statement on the SQLite file directly, the way an attacker with file access would."""
    connection = sqlite3.connect(tmp_path / "bastion.db")
    with connection:
        connection.execute(statement, params)
    connection.close()


def row(tmp_path: Path, seq: int) -> dict[str, object]:
    connection = sqlite3.connect(tmp_path / "bastion.db")
    connection.row_factory = sqlite3.Row
    found = dict(connection.execute("SELECT * FROM ledger_entries WHERE seq = ?", (seq,)).fetchone())
    connection.close()
    return found


def forged_hash(fields: dict[str, object], **changes: object) -> str:
    """The hash an attacker who knows the scheme would compute for a changed row."""
    fields = {**fields, **changes}
    return entry_hash(seq=fields["seq"], time=datetime.fromisoformat(str(fields["time"])), actor=fields["actor"],
                      action=fields["action"], subject=fields["subject"], payload=json.loads(str(fields["payload"])),
                      prev_hash=fields["prev_hash"])


def check(database):
    with database.sessions() as session:
        return verify(session)


def test_intact_chain_verifies_and_is_anchored(database, tmp_path):
    result = check(database)
    assert result.ok and result.checked == ENTRIES and result.last_seq == ENTRIES == result.anchored_seq
    assert result.first_bad_seq is None and not result.warnings
    assert row(tmp_path, 1)["prev_hash"] == GENESIS_HASH
    assert row(tmp_path, 2)["prev_hash"] == row(tmp_path, 1)["entry_hash"]
    head = json.loads((tmp_path / "ledger.head").read_text())
    assert [h["seq"] for h in head.values()] == [ENTRIES]


@pytest.mark.parametrize(("column", "value"), [
    ("actor", "mallory"),
    ("action", "dataset.release"),
    ("subject", "dataset:test"),
    ("payload", '{"version": 9}'),
    ("time", "2020-01-01 00:00:00.000000"),
])
def test_raw_sql_update_of_any_field_is_located(database, tmp_path, column, value):
    sql(tmp_path, f"UPDATE ledger_entries SET {column} = ? WHERE seq = 3", value)
    result = check(database)
    assert not result.ok and result.first_bad_seq == 3
    assert "edited" in result.problem


def test_edit_with_recomputed_hash_breaks_the_next_link(database, tmp_path):
    fields = row(tmp_path, 2)
    sql(tmp_path, "UPDATE ledger_entries SET actor = 'mallory', entry_hash = ? WHERE seq = 2",
        forged_hash(fields, actor="mallory"))
    result = check(database)
    assert not result.ok and result.first_bad_seq == 3 and "prev_hash" in result.problem


def test_rewritten_last_entry_is_caught_by_the_anchor(database, tmp_path):
    fields = row(tmp_path, ENTRIES)
    sql(tmp_path, "UPDATE ledger_entries SET actor = 'mallory', entry_hash = ? WHERE seq = ?",
        forged_hash(fields, actor="mallory"), ENTRIES)
    result = check(database)
    assert not result.ok and result.first_bad_seq == ENTRIES and "head anchor" in result.problem


def test_deleted_row_is_located(database, tmp_path):
    sql(tmp_path, "DELETE FROM ledger_entries WHERE seq = 3")
    result = check(database)
    assert not result.ok and result.first_bad_seq == 3 and "entry 3 is missing" in result.problem


def test_deleted_row_with_renumbered_rest_is_located(database, tmp_path):
    sql(tmp_path, "DELETE FROM ledger_entries WHERE seq = 2")
    for seq in range(3, ENTRIES + 1):
        sql(tmp_path, "UPDATE ledger_entries SET seq = ? WHERE seq = ?", seq - 1, seq)
    result = check(database)
    assert not result.ok and result.first_bad_seq == 2


def test_truncated_tail_is_caught_by_the_anchor(database, tmp_path):
    sql(tmp_path, "DELETE FROM ledger_entries WHERE seq >= 4")
    result = check(database)
    assert not result.ok and result.first_bad_seq == 4 and "cut off the end" in result.problem
    sql(tmp_path, "DELETE FROM ledger_entries")
    result = check(database)
    assert result.checked == 0 and result.first_bad_seq == 1


def test_inserted_row_in_the_middle_is_located(database, tmp_path):
    for seq in range(ENTRIES, 2, -1):  # make room at seq 3, from the end so the primary key never collides
        sql(tmp_path, "UPDATE ledger_entries SET seq = ? WHERE seq = ?", seq + 1, seq)
    before = row(tmp_path, 2)
    forged = {**before, "seq": 3, "actor": "mallory", "prev_hash": before["entry_hash"]}
    forged["entry_hash"] = forged_hash(forged)
    sql(tmp_path, "INSERT INTO ledger_entries (seq, time, actor, action, subject, payload, prev_hash, entry_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", *(forged[c] for c in
                                          ("seq", "time", "actor", "action", "subject", "payload", "prev_hash",
                                           "entry_hash")))
    result = check(database)
    assert not result.ok and result.first_bad_seq == 4  # the first entry after the forged one no longer fits


def test_appended_rows_are_caught_even_with_valid_hashes(database, tmp_path):
    last = row(tmp_path, ENTRIES)
    forged = {**last, "seq": ENTRIES + 1, "actor": "mallory", "prev_hash": last["entry_hash"]}
    forged["entry_hash"] = forged_hash(forged)
    sql(tmp_path, "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        *(forged[c] for c in ("seq", "time", "actor", "action", "subject", "payload", "prev_hash", "entry_hash")))
    result = check(database)
    assert not result.ok and result.first_bad_seq == ENTRIES + 1 and "not covered" in result.problem
    with database.sessions() as session:  # once a person has checked them, the entries can be accepted
        assert reanchor(session) == ENTRIES + 1
    assert check(database).ok


def test_appended_row_with_a_bogus_hash_is_located(database, tmp_path):
    last = row(tmp_path, ENTRIES)
    sql(tmp_path, "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ENTRIES + 1, last["time"], "mallory",
        "dataset.commit", "dataset:train", "{}", last["entry_hash"], "f" * 64)
    assert check(database).first_bad_seq == ENTRIES + 1


def test_reordered_rows_are_located(database, tmp_path):
    sql(tmp_path, "UPDATE ledger_entries SET seq = 100 WHERE seq = 2")
    sql(tmp_path, "UPDATE ledger_entries SET seq = 2 WHERE seq = 4")
    sql(tmp_path, "UPDATE ledger_entries SET seq = 4 WHERE seq = 100")
    result = check(database)
    assert not result.ok and result.first_bad_seq == 2


def test_failed_transaction_appends_nothing_and_keeps_the_anchor(database, tmp_path):
    with pytest.raises(RuntimeError), database.transaction() as session:
        append(session, action="dataset.commit", subject="dataset:train", actor="alice", payload={})
        raise RuntimeError("the rest of the operation failed")
    result = check(database)
    assert result.ok and result.checked == ENTRIES and result.anchored_seq == ENTRIES


def test_every_database_anchors_its_commits_even_at_a_recycled_address(tmp_path, monkeypatch):
    """SQLAlchemy's event registry keys listeners by ``id()`` of their target, and ``event.contains`` answers
    from that registry: a new sessionmaker at the address of a garbage-collected one looked registered, and
    a Database opened then never wrote its anchor (a flaky test, a few % of opens). Make every ``id()`` the
    registry takes collide, so that what happened at random happens every time."""
    import sqlalchemy.event.registry

    monkeypatch.setattr(sqlalchemy.event.registry, "id", lambda _: 0, raising=False)
    for name in ("first", "second", "third"):
        with open_database(home=tmp_path / name) as database:
            with database.transaction() as session:
                append(session, action="dataset.commit", subject="dataset:train", actor="alice", payload={})
            with pytest.raises(RuntimeError), database.transaction() as session:
                append(session, action="dataset.commit", subject="dataset:train", actor="alice", payload={})
                raise RuntimeError("the rest of the operation failed")
            result = check(database)
        assert result.ok and result.checked == 1 and result.anchored_seq == 1, name


def test_without_an_anchor_the_chain_is_checked_and_a_warning_given(database, tmp_path):
    (tmp_path / "ledger.head").unlink()
    result = check(database)
    assert result.ok and result.anchored_seq is None and "no head anchor" in result.warnings[0]


def test_a_moved_home_keeps_its_anchor_and_a_copied_one_does_not_borrow_it(database, tmp_path):
    """The anchor names a SQLite database by its absolute path: after the folder holding both moves, the entry
    under the old path (whose file is gone) is read, with a warning; beside a copy, the original still exists,
    so the copy is unanchored."""
    database.dispose()
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("bastion.db", "ledger.head"):
        (copy / name).write_bytes((tmp_path / name).read_bytes())
    with open_database(home=copy) as copied:
        assert check(copied).anchored_seq is None
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("bastion.db", "ledger.head"):
        (tmp_path / name).rename(moved / name)
    with open_database(home=moved) as reopened:
        result = check(reopened)
    assert result.ok and result.anchored_seq == ENTRIES
    assert any("old place" in warning and str(tmp_path / "bastion.db") in warning for warning in result.warnings)


def test_append_rejects_what_it_cannot_hash(database):
    with database.transaction() as session:
        with pytest.raises(InputError, match="not plain JSON"):
            append(session, action="a", subject="s", actor="me", payload={"x": float("nan")})
        with pytest.raises(InputError, match="non-empty actor"):
            append(session, action="a", subject="s", actor=" ", payload={})


def test_times_round_trip_through_the_database_unchanged(database):
    with database.sessions() as session:
        entry = verify(session)
    assert entry.ok  # hashes were computed before storing and after reading back: the time survived
    stamp = datetime(2026, 1, 2, 3, 4, 5, 600_007, tzinfo=timezone.utc)
    assert entry_hash(seq=1, time=stamp, actor="a", action="b", subject="c", payload={}, prev_hash="0") == \
        entry_hash(seq=1, time=stamp.replace(tzinfo=None), actor="a", action="b", subject="c", payload={},
                   prev_hash="0")


# --- database ---------------------------------------------------------------------------------


def test_migrations_create_exactly_the_models_schema(database):
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_database_url_and_home_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "state"))
    assert database_url() == f"sqlite:///{(tmp_path / 'state' / 'bastion.db').as_posix()}"
    monkeypatch.setenv("BASTION_DATABASE_URL", "sqlite:///elsewhere.db")
    assert database_url() == "sqlite:///elsewhere.db"


def test_reopening_keeps_data_and_sqlite_settings(database, tmp_path):
    again = open_database(home=tmp_path)
    with again.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert check(again).checked == ENTRIES
    again.dispose()


def test_in_memory_database_and_bad_urls(tmp_path):
    memory = open_database("sqlite://", home=tmp_path)
    with memory.transaction() as session:
        append(session, action="a.b", subject="s", actor="me", payload={})
    with memory.sessions() as session:
        assert verify(session).ok
    memory.dispose()
    assert not (tmp_path / "ledger.head").exists()
    with pytest.raises(InputError, match="cannot parse the database URL"):
        open_database("not a url", home=tmp_path)
    with pytest.raises(InputError, match="driver that is not installed"):
        open_database("nosuchdb://host/x", home=tmp_path)


def test_a_database_from_a_newer_bastion_is_refused(database, tmp_path):
    sql(tmp_path, "UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(InputError, match="newer than this bastion knows"):
        open_database(home=tmp_path)


def test_current_actor_order(monkeypatch):
    monkeypatch.setenv("BASTION_USER", "carol")
    assert current_actor("alice") == "alice"
    assert current_actor(None) == "carol"
    monkeypatch.delenv("BASTION_USER")
    assert current_actor(None)  # the OS user name


# --- object store -----------------------------------------------------------------------------


def test_object_store_round_trip_idempotent_and_corruption(tmp_path):
    store = ObjectStore(tmp_path / "objects")
    digest = store.put_bytes(b"hello")
    assert store.put_bytes(b"hello") == digest and len(store) == 1
    assert store.path(digest).parent.name == digest[:2] and store.get_bytes(digest) == b"hello"
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * 3_000_000)
    big = store.put_file(source)
    assert store.put_file(source) == big and len(store) == 2
    store.copy_to(big, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()

    store.path(digest).write_bytes(b"hellO")
    with pytest.raises(CorruptObjectError, match=digest):
        store.get_bytes(digest)
    with pytest.raises(CorruptObjectError):
        store.copy_to(digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    with pytest.raises(MissingObjectError, match="not in the store"):
        store.get_bytes("0" * 64)
    with pytest.raises(InputError, match="not an object id"):
        store.path("../../etc/passwd")
