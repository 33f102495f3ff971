"""The audit log: every request the gateway answers, append-only and hash-chained, with its exact input.

Each record's ``entry_hash`` is the SHA-256 of a canonical JSON of its fields (everything but the
hash itself; the record's ``hash_format`` says which, see :data:`HASH_FORMATS`), ``prev_hash`` the previous
record's hash. After every commit the last ``seq`` and hash
are written to ``<home>/audit.head`` (outside the database), so records cut off the end, or a rewritten
last record, are detected too (see ``bastion.storage.ledger`` for what an anchor does and does not show).

Writes are grouped: records queued while the event loop serves other requests are committed in one
transaction, and only then are their requests answered. A request is acknowledged only after its record
is committed, so a gateway killed at any moment has logged every answer it gave.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import JSON, Connection, insert, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.core.ids import array_digest
from bastion.storage.bulk_insert import SqliteBulkInsert
from bastion.storage.database import DATABASE_KEY, Database
from bastion.storage.ledger import (
    GENESIS_HASH,
    LedgerCheck,
    LedgerProblem,
    anchor_problems,
    canonical_json,
    canonical_time,
    read_anchor,
    write_anchor,
)
from bastion.storage.tables import AuditInputRow, AuditRecordRow, PolicyRow, ReviewCaseRow

logger = logging.getLogger(__name__)
ANCHOR_NAME = "audit.head"
#: The PostgreSQL advisory lock gateways take to append to a shared audit chain ("bastion" in ASCII).
AUDIT_LOCK_KEY = int.from_bytes(b"bastion", "big")
HASHED_FIELDS = ("seq", "request_id", "time", "key_id", "model", "model_version", "model_sha256", "policy_sha256",
                 "input_sha256", "scores", "probabilities", "response", "decision", "status", "review_id",
                 "prev_hash")
#: The fields stored as JSON columns.
JSON_FIELDS = tuple(column.key for column in AuditRecordRow.__table__.columns if isinstance(column.type, JSON))
#: Hashed only when set, so records written before the field existed keep their hashes.
OPTIONAL_HASHED_FIELDS = ("batch", "hash_format")
#: How a record's hashed fields become the bytes its ``entry_hash`` is the SHA-256 of, by ``hash_format``:
#:
#: - ``None`` (stored as NULL): the standard library's canonical JSON (``bastion.storage.ledger.canonical_json``:
#:   sorted keys, compact, UTF-8, no NaN). Every record before migration 0006, and a record orjson cannot write.
#: - ``2``: orjson with sorted keys (compact, UTF-8; floats in orjson's shortest round-trip spelling, which writes
#:   ``0.00005`` and ``1e-7`` where the first format writes ``5e-05`` and ``1e-07``; NaN and infinities as ``null``,
#:   as the JSON columns store them). The format is one of the hashed fields. 5 µs a gateway record against the
#:   first format's 22, which was 4% of the gateway's CPU a request under load (RESULTS.md, issue 6).
#:   orjson has changed how it spells numbers before (3.11.0 wrote ``1e22``, 3.11.9 writes ``1e+22``), so the
#:   installed orjson is checked on :data:`SPELLING_PROBE` first (:func:`orjson_spells_format_2`): with one that
#:   spells otherwise, new records are written in the first format and format-2 records are reported as not
#:   checkable rather than as edited. ``tests/test_audit_hash.py`` pins a record's hash in each format.
#:   Records never hold NaN or infinities in this format (the writer stores ``null``), so ``bastion audit verify``
#:   reports one that does as edited: SQLite's JSON reader would take ``NaN`` where ``null`` was hashed. On
#:   PostgreSQL, whose ``json`` type has no NaN, a record with one fails to write, as it did in the first format.
HASH_FORMATS: dict[int | None, str] = {None: "standard-library canonical JSON", 2: "orjson, sorted keys"}
#: The format new records are written in (when the installed orjson spells numbers as format 2 needs).
HASH_FORMAT = 2
#: Numbers whose spelling differs between JSON writers, and :data:`SPELLING`, how format 2 spells them.
SPELLING_PROBE = [1e22, 3.2e17, 1e16, 1e-7, 5e-05, 0.1, -0.0, 2.5e-310, 1.7976931348623157e308, 1.0, 5e-324, 1.23e-18]
SPELLING = b"[1e+22,3.2e+17,1e+16,1e-7,0.00005,0.1,-0.0,2.5e-310,1.7976931348623157e+308,1.0,5e-324,1.23e-18]"
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS  # a dataclass keeps its field order


@functools.cache
def orjson_spells_format_2() -> bool:
    """Whether the installed orjson writes :data:`SPELLING_PROBE` as format 2 was defined with (checked once)."""
    return orjson.dumps(SPELLING_PROBE) == SPELLING


def record_hash(fields: dict[str, Any]) -> str:
    """Hex SHA-256 of a record's hashed fields (``time`` in canonical form) serialised as its ``hash_format`` says
    (absent or ``None``: the first format).

    Raises:
        ValueError: an unknown ``hash_format``; a NaN or infinite number in the first format; format 2 with an
            orjson that spells numbers otherwise (:func:`orjson_spells_format_2`).
        TypeError: a value the format cannot write (orjson: a non-string key, an integer beyond 64 bits).
    """
    hash_format = fields.get("hash_format")
    if hash_format not in HASH_FORMATS:
        raise ValueError(f"unknown audit hash_format {hash_format!r}; known: "
                         + ", ".join(f"{k} ({v})" for k, v in HASH_FORMATS.items()))
    if hash_format == 2 and not orjson_spells_format_2():
        raise ValueError(f"orjson {orjson.__version__} spells numbers otherwise than format 2 was written with; "
                         "install orjson>=3.11.9 to check format-2 records")
    document = {name: fields[name] for name in HASHED_FIELDS}
    document.update({name: fields[name] for name in OPTIONAL_HASHED_FIELDS if fields.get(name) is not None})
    document["time"] = canonical_time(document["time"])
    if hash_format == 2:
        return hashlib.sha256(orjson.dumps(document, option=_ORJSON_OPTIONS)).hexdigest()
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


@dataclass
class PendingRecord:
    """A record waiting for the writer: the fields of ``AuditRecordRow`` but ``seq`` and the hashes, the
    input array, and the review case to open with it (if the request was escalated). ``input_sha256`` is
    computed from ``inputs`` unless given; ``batch`` is the request's ``BatchSlot`` as JSON when it
    shared a forward pass."""

    request_id: str
    key_id: str | None
    model: str
    model_version: str
    model_sha256: str | None
    policy_sha256: str
    inputs: np.ndarray | None
    scores: dict[str, Any]
    probabilities: list[Any] | None
    response: dict[str, Any]
    decision: str
    status: int
    review: ReviewCaseRow | None = None
    batch: dict[str, Any] | None = None
    input_sha256: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if self.input_sha256 is None and self.inputs is not None:
            self.input_sha256 = array_digest(self.inputs)


class AuditLog:
    """The writer of the audit log for one open database: ``start`` it, ``append`` records, ``close`` it.

    Records are written on the event loop, in groups: ``append`` queues a record and, if no write is due,
    schedules one for when the loop has run the other requests that are ready; that write commits every
    queued record in one transaction and only then releases their requests. No thread: a writer thread
    would wait for the interpreter lock behind the busy request loop (milliseconds per handover). The
    head anchor is rewritten at most every ``anchor_seconds`` and when the log closes.

    ``sync=False`` writes the head anchor without flushing it to disk (open the database with
    ``sync_every_commit=False`` to match): records survive the process dying, not a power loss.
    """

    def __init__(self, database: Database, *, sync: bool = True, anchor_seconds: float = 1.0) -> None:
        self.database = database
        self.sync = sync
        self.anchor_seconds = anchor_seconds
        self.anchor: Path | None = None if database.in_memory else database.home / ANCHOR_NAME
        self._pending: list[tuple[PendingRecord, asyncio.Future[int]]] = []
        self._write_due = False
        self._head: tuple[int, str] | None = None  # (seq, entry_hash) of the last record, once read
        self._anchored: tuple[int, str] | None = None
        self._anchored_at = 0.0
        self._started = False
        with database.sessions() as session:  # no connection is made: the key lives in the session's info
            self._database_key: str = session.info.get(DATABASE_KEY, "")

    def start(self) -> None:
        """Adopt records committed after the last anchor update (a stop between commit and anchor)."""
        self._adopt_unanchored_tail()
        self._started = True

    async def append(self, record: PendingRecord) -> int:
        """Queue ``record`` and wait until it is committed; its ``seq``. Raises what stopped the write."""
        if not self._started:
            raise RuntimeError("the audit log is not started")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._pending.append((record, done))
        if not self._write_due:
            self._write_due = True
            loop.call_soon(self._write_pending)
        return await done

    def write(self, records: list[PendingRecord]) -> list[int]:
        """Commit ``records`` now, outside any event loop (scripts, tests); their ``seq``s."""
        seqs = self._commit_with_retries(records)
        self._anchor_head(force=True)
        return seqs

    def close(self) -> None:
        """Write what is queued and anchor the head."""
        if self._pending:
            self._write_pending()
        self._anchor_head(force=True)
        self._started = False

    def save_policy(self, document: str, sha256: str) -> None:
        """Keep a policy document by its hash (once), so replay can find it."""
        with self.database.transaction() as session:
            if session.get(PolicyRow, sha256) is None:
                session.add(PolicyRow(sha256=sha256, document=document, created_at=datetime.now(timezone.utc)))

    # --- writing -------------------------------------------------------------------------------------------

    def _write_pending(self) -> None:
        self._write_due = False
        batch, self._pending = self._pending, []
        try:
            seqs = self._commit_with_retries([record for record, _ in batch])
        except Exception as error:  # noqa: BLE001 - every waiting request must hear of the failure
            logger.exception("audit log write failed")
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for (_, done), seq in zip(batch, seqs, strict=True):
            if not done.done():  # a request cancelled while waiting (client gone) is still logged
                done.set_result(seq)
        self._anchor_head()

    def _commit_with_retries(self, records: list[PendingRecord]) -> list[int]:
        for attempt in range(3):
            try:
                return self._commit(records)
            except IntegrityError:  # another gateway on the same database appended first: re-read the head
                self._head = None
                if attempt == 2:
                    raise
            except Exception:
                self._head = None
                raise
        raise AssertionError("unreachable")

    def _anchor_head(self, *, force: bool = False) -> None:
        """Rewrite the head anchor (the anchor follows the commit: a gateway killed in between adopts the
        tail when it starts again)."""
        if self.anchor is None or self._head is None or self._head == self._anchored:
            return
        now = time.monotonic()
        if not force and now - self._anchored_at < self.anchor_seconds:
            return
        try:
            write_anchor(self.anchor, self._database_key, *self._head, sync=self.sync)
        except OSError:
            logger.exception("could not update the audit head anchor %s", self.anchor)
            return
        self._anchored, self._anchored_at = self._head, now

    def _commit(self, records: list[PendingRecord]) -> list[int]:
        """Insert ``records`` (and their inputs and review cases) in one transaction, through SQLAlchemy Core
        (the ORM's unit of work costs more than the insert itself here), and on SQLite through the driver's
        cursor with statements compiled once (``bastion.storage.bulk_insert``)."""
        with self.database.engine.begin() as connection:
            shared = connection.dialect.name == "postgresql"
            if shared:
                # Gateways sharing a PostgreSQL database append in turn: the lock is held to the commit, and the
                # head is read under it every time (another gateway may have appended since).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
            if self._head is None or shared:  # else once, and after a conflict: this writer owns the head
                last = connection.execute(select(AuditRecordRow.seq, AuditRecordRow.entry_hash)
                                          .order_by(AuditRecordRow.seq.desc()).limit(1)).first()
                self._head = (last.seq, last.entry_hash) if last else (0, GENESIS_HASH)
            seq, prev_hash = self._head
            _store_inputs(connection, records)
            rows, reviews, seqs = [], [], []
            for record in records:
                seq += 1
                row = _row(record, seq, prev_hash)
                rows.append(row)
                if record.review is not None:
                    reviews.append({c.name: getattr(record.review, c.name) for c in ReviewCaseRow.__table__.columns})
                prev_hash = row["entry_hash"]
                seqs.append(seq)
            if connection.dialect.name == "sqlite":
                _sqlite_inserts(connection.dialect).records.execute(connection, rows)
            else:
                connection.execute(insert(AuditRecordRow), rows)
            if reviews:
                connection.execute(insert(ReviewCaseRow), reviews)
        self._head = (seq, prev_hash)
        return seqs

    def _adopt_unanchored_tail(self) -> None:
        if self.anchor is None:
            return
        with self.database.sessions() as session:
            check = verify_audit(session, anchor=self.anchor)
            if not check.ok or check.last_seq is None or check.last_seq == check.anchored_seq:
                return  # tampering stays visible to `bastion audit verify`; nothing to adopt otherwise
            last = session.get(AuditRecordRow, check.last_seq)
            write_anchor(self.anchor, self._database_key, last.seq, last.entry_hash)
        logger.warning("audit log: records after %s were committed but not anchored yet (a gateway stopped between "
                       "the two, or another gateway is writing to this home now); their chain is intact, anchored "
                       "now at %d",
                       "the start" if check.anchored_seq is None else check.anchored_seq, check.last_seq)


def _store_inputs(connection: Connection, records: list[PendingRecord]) -> None:
    """Insert the records' input arrays, each content once: one ``INSERT ... ON CONFLICT DO NOTHING`` where the
    database has it (SQLite, PostgreSQL), else a query for the stored ones first."""
    arrays: dict[str, np.ndarray] = {}
    for record in records:
        if record.inputs is not None:
            arrays.setdefault(record.input_sha256, record.inputs)
    if not arrays:
        return
    rows = [{"sha256": digest, "dtype": array.dtype.str, "shape": list(array.shape),
             "data": np.ascontiguousarray(array).tobytes()} for digest, array in arrays.items()]
    if connection.dialect.name == "sqlite":
        _sqlite_inserts(connection.dialect).inputs.execute(connection, rows)
        return
    ignoring = _insert_ignoring_duplicates(connection.dialect.name)
    if ignoring is None:
        present = set(connection.scalars(select(AuditInputRow.sha256).where(AuditInputRow.sha256.in_(list(arrays)))))
        rows = [row for row in rows if row["sha256"] not in present]
    if rows:
        connection.execute(ignoring if ignoring is not None else insert(AuditInputRow), rows)


class _SqliteInserts(NamedTuple):
    records: SqliteBulkInsert
    inputs: SqliteBulkInsert  # skips input arrays already stored


@functools.lru_cache(maxsize=16)
def _sqlite_inserts(dialect: Dialect) -> _SqliteInserts:
    """A SQLite engine's inserts of audit records and of input arrays."""
    return _SqliteInserts(SqliteBulkInsert(AuditRecordRow.__table__, dialect),
                          SqliteBulkInsert(AuditInputRow.__table__, dialect, skip_duplicates_of="sha256"))


@functools.cache
def _insert_ignoring_duplicates(dialect: str):
    """An insert into ``audit_inputs`` that skips rows already there, for ``dialect`` (other than SQLite, which
    has :func:`_sqlite_inserts`); ``None`` if unsupported."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return None
    return dialect_insert(AuditInputRow).on_conflict_do_nothing(index_elements=[AuditInputRow.sha256])


def _row(record: PendingRecord, seq: int, prev_hash: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "seq": seq, "request_id": record.request_id, "time": record.time, "key_id": record.key_id,
        "model": record.model, "model_version": record.model_version, "model_sha256": record.model_sha256,
        "policy_sha256": record.policy_sha256, "input_sha256": record.input_sha256,
        "scores": record.scores, "probabilities": record.probabilities, "response": record.response,
        "decision": record.decision, "status": record.status,
        "review_id": None if record.review is None else record.review.id, "batch": record.batch,
        "prev_hash": prev_hash, "hash_format": HASH_FORMAT if orjson_spells_format_2() else None,
    }
    try:
        entry_hash = record_hash(fields)
    except TypeError:  # orjson writes no non-string keys, integers beyond 64 bits nor dataclasses: the first format
        fields["hash_format"] = None
        for name in JSON_FIELDS:  # as they will read back (integer keys become strings, and sort as strings)
            fields[name] = json.loads(json.dumps(fields[name], allow_nan=False))
        entry_hash = record_hash(fields)
    return {**fields, "entry_hash": entry_hash}


def audit_anchor(database: Database) -> Path | None:
    """The head anchor file of ``database``'s audit log (``None`` for an in-memory database)."""
    return None if database.in_memory else database.home / ANCHOR_NAME


def verify_audit(session: Session, *, anchor: Path | None) -> LedgerCheck:
    """Recompute the audit chain and compare its end with the head anchor.

    Records after the anchored one, chained correctly, are a warning, not a problem: a running gateway
    rewrites the anchor at most once a second, so its newest records are always past it. Edited, removed,
    reordered or cut-off records are problems.

    Args:
        anchor: ``<home>/audit.head`` (see :func:`audit_anchor`); ``None`` checks the chain alone.

    Returns:
        A ``LedgerCheck`` naming every record where the chain breaks, in order.
    """
    problems: list[LedgerProblem] = []
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    hashes: dict[int, str] = {}
    query = select(AuditRecordRow).order_by(AuditRecordRow.seq).execution_options(yield_per=2000)
    for row in session.scalars(query):
        checked += 1
        problems.extend(_record_problems(row, expected_seq, prev_hash))
        hashes[row.seq] = row.entry_hash
        expected_seq, prev_hash = row.seq + 1, row.entry_hash
    last_seq = expected_seq - 1 if checked else None
    check = LedgerCheck(checked=checked, last_seq=last_seq)
    head = read_anchor(anchor, session.info.get(DATABASE_KEY), warnings=check.warnings) if anchor is not None else None
    if head is None:
        if checked:
            check.warnings.append("no head anchor for this audit log: records cut off its end cannot be detected")
    else:
        check.anchored_seq = head[0]
        for problem in anchor_problems(head, hashes, last_seq, anchor):
            if last_seq is not None and last_seq > head[0] and problem.seq == head[0] + 1:
                check.warnings.append(f"records {head[0] + 1}..{last_seq} are newer than the head anchor (record "
                                      f"{head[0]}): written since a running gateway last updated it, or inserted "
                                      "into the table; their chain is intact")
            else:
                problems.append(problem)
    check.problems = sorted(problems, key=lambda p: p.seq)
    return check


def _record_problems(row: AuditRecordRow, expected_seq: int, prev_hash: str) -> list[LedgerProblem]:
    problems = []
    if row.seq != expected_seq:
        problems.append(LedgerProblem(seq=min(row.seq, expected_seq), problem=f"record {row.seq} where {expected_seq} "
                                      "was expected: records were deleted or renumbered"))
    fields = {name: getattr(row, name) for name in HASHED_FIELDS + OPTIONAL_HASHED_FIELDS}
    try:
        expected_hash = record_hash(fields)
    except (ValueError, TypeError) as error:
        unreadable_here = row.hash_format == 2 and not orjson_spells_format_2()  # the installed orjson, not an edit
        problems.append(LedgerProblem(seq=row.seq, problem=f"the record's entry_hash cannot be recomputed ({error})"
                                      + ("" if unreadable_here else ": its hash_format or a field was edited")))
        expected_hash = row.entry_hash
    if row.hash_format == 2 and expected_hash == row.entry_hash and _non_finite(fields):
        problems.append(LedgerProblem(seq=row.seq, problem="the record holds NaN or an infinity, which its format "
                                      "never stores (the writer stores null): a field was edited"))
    if expected_hash != row.entry_hash:
        problems.append(LedgerProblem(seq=row.seq, problem="the record's contents do not match its entry_hash: a "
                                      "field (input hash, scores, output, decision...) was edited"))
    if row.prev_hash != prev_hash:
        problems.append(LedgerProblem(seq=row.seq, problem="prev_hash does not match the previous record's hash: "
                                      "the record before it was rewritten or removed, or this one was inserted"))
    return problems


def _non_finite(value: Any) -> bool:
    """Whether ``value`` (JSON as read back: dicts, lists, numbers, strings) holds a NaN or an infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    return False
