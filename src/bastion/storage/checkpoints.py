"""WAL checkpoints of a SQLite database moved off the committing thread.

SQLite in WAL mode copies the write-ahead log back into the database file (a checkpoint, with a disk
flush) inside whichever commit pushes the log past 1,000 pages. For a gateway that commits an audit
record before each answer, that puts a pause of several milliseconds on about one request in a hundred:
measured on the audit writer, one-record commits had a p99 of 6.6 ms with automatic checkpoints and
0.9 ms without. :class:`BackgroundCheckpoints` turns the automatic checkpoints off on the engine's
connections and runs passive checkpoints from a thread of its own, on its own connection; the
``sqlite3`` module releases the interpreter lock while SQLite works, so the thread costs the event
loop almost nothing. Other databases (PostgreSQL) need none of this: ``start`` does nothing there.

A passive checkpoint never waits for the writer, so under sustained load it never catches up with it: SQLite starts
the log over only once every frame in it has been copied back, and a gateway committing every few milliseconds
always has new ones. The log then grows without bound (measured with ``benchmarks/gateway_sustained.py``: 716 MB
after 30,000 requests, the database itself 109 MB) and every page read searches more of its index, so the writes
slow down as it grows. So when the log is over ``restart_bytes`` the thread follows its passive checkpoint with a
second one (the frames written meanwhile) and then a ``RESTART`` checkpoint, which holds the writer back only while
it copies that short tail, and lets the next commit start the log over; the writers' ``journal_size_limit`` trims
the file back to ``restart_bytes`` when it does.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading

from sqlalchemy import event

from bastion.storage.database import Database

logger = logging.getLogger(__name__)


class BackgroundCheckpoints:
    """Passive WAL checkpoints of ``database`` every ``every_seconds`` (default 1.0), from a daemon thread, and a
    restart of the log whenever it is over ``restart_bytes`` (default 32 MiB; see the module's docstring).

    Use ``start()`` once the schema is in place and ``stop()`` before the database is closed (``stop``
    runs a last checkpoint). A database other than a SQLite file is left alone.
    """

    def __init__(self, database: Database, *, every_seconds: float = 1.0, restart_bytes: int = 32 << 20) -> None:
        if every_seconds <= 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        if restart_bytes <= 0:
            raise ValueError(f"restart_bytes must be positive, got {restart_bytes}")
        self.database = database
        self.every_seconds = every_seconds
        self.restart_bytes = restart_bytes
        self._writer_settings = functools.partial(_writer_settings, journal_size_limit=restart_bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        url = database.engine.url
        self.path = url.database if url.get_backend_name() == "sqlite" and not database.in_memory else None

    def start(self) -> None:
        """Turn automatic checkpoints off on the engine's connections and start the checkpointing thread."""
        if self.path is None or self._thread is not None:
            return
        event.listen(self.database.engine, "connect", self._writer_settings)
        self.database.engine.dispose()  # connections made before the listener are replaced
        self._thread = threading.Thread(target=self._run, name="bastion-wal-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint; automatic checkpoints are on again for new connections."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        event.remove(self.database.engine, "connect", self._writer_settings)
        self.database.engine.dispose()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, check_same_thread=False)
        try:
            while not self._stop.wait(self.every_seconds):
                self._checkpoint(connection)
            self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if self._log_bytes() > self.restart_bytes:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # what was written meanwhile
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()  # busy: the next round tries again
        except sqlite3.Error:  # a busy or locked database: the next round tries again
            logger.warning("WAL checkpoint failed; retrying in the next round", exc_info=True)

    def _log_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:  # no log yet
            return 0


def _writer_settings(dbapi_connection, _record, *, journal_size_limit: int) -> None:
    """No automatic checkpoints on the engine's connections, and the log trimmed when they start it over."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={int(journal_size_limit)}")
    cursor.close()
