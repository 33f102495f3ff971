"""Background WAL checkpoints: the engine's own connections never checkpoint, the thread does, and stopping
leaves a database whose log is written back."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from bastion.storage.checkpoints import BackgroundCheckpoints
from bastion.storage.database import open_database


def _autocheckpoint(database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()


def test_checkpoints_move_to_the_thread_and_back(tmp_path):
    database = open_database(home=tmp_path)
    checkpoints = BackgroundCheckpoints(database, every_seconds=0.05)
    checkpoints.start()
    assert _autocheckpoint(database) == 0
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE filler (data BLOB)"))
        connection.execute(text("INSERT INTO filler VALUES (:data)"), [{"data": b"x" * 4000}] * 500)
    assert (tmp_path / "bastion.db-wal").stat().st_size > 1_000_000  # the engine's commits did not checkpoint
    deadline = time.monotonic() + 30
    frames = None
    while time.monotonic() < deadline:  # once the thread has copied the log back, the next write restarts it
        time.sleep(0.1)
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO filler VALUES (x'00')"))
        with database.engine.connect() as connection:
            _, frames, _ = connection.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
        if frames < 50:
            break
    assert frames is not None and frames < 50
    checkpoints.stop()
    assert _autocheckpoint(database) == 1000
    database.dispose()


def test_other_databases_are_left_alone(tmp_path):
    database = open_database("sqlite://", home=tmp_path)
    checkpoints = BackgroundCheckpoints(database)
    checkpoints.start()
    assert checkpoints.path is None and checkpoints._thread is None
    checkpoints.stop()
    with pytest.raises(ValueError, match="positive"):
        BackgroundCheckpoints(database, every_seconds=0)


def test_a_log_written_under_load_is_started_over_past_its_limit(tmp_path):
    """A passive checkpoint never catches up with a writer that commits every millisecond or so (a gateway under
    load); past ``restart_bytes`` the log is restarted, so it stays bounded instead of growing with everything
    written."""
    database = open_database(home=tmp_path)
    checkpoints = BackgroundCheckpoints(database, every_seconds=0.1, restart_bytes=1 << 20)
    checkpoints.start()
    log = tmp_path / "bastion.db-wal"
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE filler (data BLOB)"))
    largest = 0
    for index in range(1500):  # 24 MB in all
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO filler VALUES (:data)"), [{"data": bytes([index % 256]) * 4000}] * 4)
        largest = max(largest, log.stat().st_size)
        time.sleep(0.001)  # the gateway's other work between two commits
    checkpoints.stop()
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM filler")).scalar_one() == 6000
    assert largest < 8 << 20, largest
    database.dispose()


def test_restart_bytes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="restart_bytes must be positive"):
        BackgroundCheckpoints(open_database("sqlite://", home=tmp_path), restart_bytes=0)
