"""The append-only, hash-chained ledger of every operation on bastion's records, and who did it.

Each entry's ``entry_hash`` is the SHA-256 of a canonical JSON of its ``seq``, ``time``, ``actor``,
``action``, ``subject``, ``payload`` and ``prev_hash``; ``prev_hash`` is the previous entry's
``entry_hash`` (64 zeros for entry 1). ``verify`` recomputes the chain and names the first entry that
does not fit: an edited field (its hash no longer matches), a deleted entry (a gap in ``seq``), an
inserted or reordered entry (its ``seq`` or ``prev_hash`` no longer fits its neighbours).

The head anchor. A chain alone cannot show that entries were cut off its end, nor that someone who
can write to the table rewrote the last entry and recomputed its hash. So after every commit that
appended entries, the new last ``seq`` and ``entry_hash`` are written (temp file + rename) to
``<home>/ledger.head``, a file outside the database, keyed by database. ``verify`` then requires the
anchored entry to be present with that hash (a truncated tail or a rewritten head is detected) and
no entry after it (entries inserted behind bastion's back, even with correct hashes, are detected).

What the anchor does not protect against: someone who can write both the database and the home
folder can rewrite the whole chain and the anchor consistently (there is no secret key; sign or copy
``ledger.head`` elsewhere for that). A process that stops between its database commit and the anchor
update leaves entries "not covered by the anchor"; check them and accept them with ``reanchor``.
Processes on other machines that share a PostgreSQL database keep their own anchors, so each machine
sees the others' entries as not covered; keep ``<home>`` on shared storage for that set-up. Without an
anchor file (a fresh home), ``verify`` checks the chain only and says so in ``LedgerCheck.warnings``.

The ledger is generic: datasets append ``dataset.commit``, ``dataset.quarantine``...; the model
registry appends its own actions. Entries are only ever added in the caller's transaction.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.core.files import write_atomically
from bastion.storage.database import DATABASE_KEY, LEDGER_HEAD_KEY
from bastion.storage.tables import LedgerEntry

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
USER_ENV = "BASTION_USER"
_PENDING_KEY = "bastion.ledger_pending"


def current_actor(explicit: str | None = None) -> str:
    """Who is acting: ``explicit`` (the CLI's ``--as``), else ``$BASTION_USER``, else the OS user name."""
    for candidate in (explicit, os.environ.get(USER_ENV)):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment nor the password database
        return "unknown"


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys, UTF-8 text kept as is, no NaN: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_time(time: datetime) -> str:
    """``time`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (naive times, as SQLite returns them, are UTC)."""
    if time.tzinfo is not None:
        time = time.astimezone(timezone.utc).replace(tzinfo=None)
    return time.isoformat(timespec="microseconds") + "Z"


def entry_hash(*, seq: int, time: datetime, actor: str, action: str, subject: str, payload: Any,
               prev_hash: str) -> str:
    """Hex SHA-256 of the canonical JSON of one entry's fields (everything but its own hash)."""
    document = {"seq": seq, "time": canonical_time(time), "actor": actor, "action": action, "subject": subject,
                "payload": payload, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def append(session: Session, *, action: str, subject: str, actor: str, payload: dict[str, Any] | None = None
           ) -> LedgerEntry:
    """Add one entry at the end of the chain, in ``session``'s transaction (the caller commits).

    Args:
        action: what was done, namespaced: ``dataset.commit``, ``model.approve``.
        subject: what it was done to: ``dataset:train``, ``model:fraud-cnn:3``.
        actor: who did it (see ``current_actor``).
        payload: details, JSON-serialisable (no NaN); stored in its canonical form.

    Two writers appending at once cannot both win: the second fails on the ``seq`` primary key and
    its transaction rolls back.
    """
    for field, value in (("action", action), ("subject", subject), ("actor", actor)):
        if not value or not value.strip():
            raise InputError(f"a ledger entry needs a non-empty {field}")
    anchor = session.info.get(LEDGER_HEAD_KEY)
    if anchor is not None:
        _read_anchor_file(anchor)  # a damaged anchor refuses the change now, before anything is committed
    try:
        stored_payload = json.loads(canonical_json(payload or {}))
    except (TypeError, ValueError) as error:
        raise InputError(f"ledger payload for {action} {subject} is not plain JSON: {error}") from None
    last = session.execute(select(LedgerEntry.seq, LedgerEntry.entry_hash)
                           .order_by(LedgerEntry.seq.desc()).limit(1)).first()
    seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
    time = datetime.now(timezone.utc)
    entry = LedgerEntry(seq=seq, time=time, actor=actor, action=action, subject=subject, payload=stored_payload,
                        prev_hash=prev_hash)
    entry.entry_hash = entry_hash(seq=seq, time=time, actor=actor, action=action, subject=subject,
                                  payload=stored_payload, prev_hash=prev_hash)
    session.add(entry)
    session.flush()
    session.info[_PENDING_KEY] = (seq, entry.entry_hash)
    return entry


def entries(session: Session, *, subject: str | None = None, limit: int | None = None) -> list[LedgerEntry]:
    """The last ``limit`` entries (all by default), oldest first; only those about ``subject`` if given."""
    query = select(LedgerEntry).order_by(LedgerEntry.seq.desc())
    if subject is not None:
        query = query.where(LedgerEntry.subject == subject)
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.scalars(query).all()))


class LedgerProblem(BaseModel):
    """One entry that does not fit the chain."""

    model_config = ConfigDict(extra="forbid")
    seq: int = Field(description="the entry where the chain breaks")
    problem: str


class LedgerCheck(BaseModel):
    """What ``verify`` found. ``ok`` is false as soon as one entry does not fit."""

    model_config = ConfigDict(extra="forbid")
    checked: int = Field(description="entries read")
    last_seq: int | None = Field(default=None, description="seq of the last entry in the table")
    anchored_seq: int | None = Field(default=None, description="seq recorded in the head anchor, if any")
    problems: list[LedgerProblem] = Field(default_factory=list, description="in seq order")
    warnings: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.problems

    @computed_field  # type: ignore[prop-decorator]
    @property
    def first_bad_seq(self) -> int | None:
        return self.problems[0].seq if self.problems else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def problem(self) -> str | None:
        """What is wrong with the first bad entry."""
        return self.problems[0].problem if self.problems else None


def verify(session: Session, *, anchor: Path | None = None) -> LedgerCheck:
    """Recompute the whole chain and compare its end with the head anchor.

    Args:
        anchor: the head anchor file; default: the one of the database the session belongs to
            (``<home>/ledger.head``). Sessions not made by ``open_database`` are checked without one.

    Returns:
        ``LedgerCheck`` naming, in order, every entry where the chain breaks and what is wrong.
    """
    anchor = anchor if anchor is not None else session.info.get(LEDGER_HEAD_KEY)
    problems: list[LedgerProblem] = []
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    hashes: dict[int, str] = {}
    for row in session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq).execution_options(yield_per=1000)):
        checked += 1
        problems.extend(_entry_problems(row, expected_seq, prev_hash))
        hashes[row.seq] = row.entry_hash
        expected_seq, prev_hash = row.seq + 1, row.entry_hash
    last_seq = expected_seq - 1 if checked else None
    check = LedgerCheck(checked=checked, last_seq=last_seq)
    head = read_anchor(anchor, session.info.get(DATABASE_KEY), warnings=check.warnings) if anchor else None
    if head is None:
        if checked:
            check.warnings.append("no head anchor for this database: entries cut off the end of the ledger "
                                  "cannot be detected")
    else:
        check.anchored_seq = head[0]
        problems.extend(anchor_problems(head, hashes, last_seq, anchor))
    check.problems = sorted(problems, key=lambda p: p.seq)
    return check


def reanchor(session: Session, *, anchor: Path | None = None) -> int | None:
    """Record the ledger's current last entry as the trusted head; returns its seq (``None``: empty ledger).

    Use after checking entries that ``verify`` reports as not covered by the anchor.
    """
    anchor = anchor if anchor is not None else session.info.get(LEDGER_HEAD_KEY)
    if anchor is None:
        raise InputError("this session has no head anchor file; open the database with open_database")
    last = session.execute(select(LedgerEntry.seq, LedgerEntry.entry_hash)
                           .order_by(LedgerEntry.seq.desc()).limit(1)).first()
    if last is None:
        return None
    write_anchor(anchor, session.info.get(DATABASE_KEY), last.seq, last.entry_hash, force=True)
    return last.seq


def anchored_head(session: Session, *, anchor: Path | None = None) -> tuple[int, str] | None:
    """The ``(seq, entry_hash)`` the head anchor records for the session's database (``None``: no anchor)."""
    anchor = anchor if anchor is not None else session.info.get(LEDGER_HEAD_KEY)
    return read_anchor(anchor, session.info.get(DATABASE_KEY)) if anchor is not None else None


def count(session: Session) -> int:
    """Number of entries in the ledger."""
    return session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


class LedgerSession(Session):
    """The ``Session`` class of databases opened by ``open_database``: after each commit that appended
    entries it updates the head anchor named in its ``info``; a rollback forgets the appended entries."""


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    anchor = session.info.get(LEDGER_HEAD_KEY)
    if pending is not None and anchor is not None:
        try:
            write_anchor(anchor, session.info.get(DATABASE_KEY), *pending)
        except (OSError, InputError) as error:
            # The change is committed: raising now would make the caller undo its files (objects a committed
            # version needs). The anchor only lags; `ledger --verify` reports it and `--reanchor` renews it.
            logger.error("committed, but the ledger head anchor %s could not be updated (%s); "
                         "`bastion data ledger --verify` will report it", anchor, error)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


# Listened to once, on a class that lives as long as the process; the class each sessionmaker makes from
# it inherits the listeners. Not per sessionmaker guarded by ``event.contains``: SQLAlchemy's registry keys
# listeners by ``id()`` of the target, so a new sessionmaker at the address of a garbage-collected one
# looked registered already, and that database never wrote its anchor.
event.listen(LedgerSession, "after_commit", _after_commit)
event.listen(LedgerSession, "after_rollback", _after_rollback)


def _entry_problems(row: LedgerEntry, expected_seq: int, prev_hash: str) -> list[LedgerProblem]:
    problems = []
    if row.seq > expected_seq:
        last_gone = row.seq - 1
        gone = f"entry {expected_seq} is" if last_gone == expected_seq else f"entries {expected_seq}..{last_gone} are"
        problems.append(LedgerProblem(seq=expected_seq, problem=f"{gone} missing: deleted, or renumbered"))
    elif row.seq < expected_seq:
        problems.append(LedgerProblem(seq=row.seq, problem=f"seq {row.seq} where {expected_seq} was expected: "
                                      "renumbered"))
    recomputed = entry_hash(seq=row.seq, time=row.time, actor=row.actor, action=row.action, subject=row.subject,
                            payload=row.payload, prev_hash=row.prev_hash)
    if recomputed != row.entry_hash:
        problems.append(LedgerProblem(seq=row.seq, problem="the entry's contents do not match its entry_hash: a "
                                      "field (time, actor, action, subject, payload, prev_hash or seq) was edited"))
    if row.prev_hash != prev_hash:
        before = "the start of the ledger" if expected_seq == 1 else f"entry {expected_seq - 1}"
        problems.append(LedgerProblem(seq=row.seq, problem=f"prev_hash does not match the hash of {before}: the "
                                      "entry before it was rewritten or removed, or this one was inserted"))
    return problems


def anchor_problems(head: tuple[int, str], hashes: dict[int, str], last_seq: int | None,
                     anchor: Path) -> list[LedgerProblem]:
    anchored_seq, anchored_hash = head
    if last_seq is None or last_seq < anchored_seq:
        first_gone = (last_seq or 0) + 1
        return [LedgerProblem(seq=first_gone, problem=f"the ledger ends at entry {last_seq or 0} but the head anchor "
                              f"{anchor} records entry {anchored_seq}: entries {first_gone}..{anchored_seq} were "
                              "cut off the end")]
    if hashes.get(anchored_seq) != anchored_hash:
        return [LedgerProblem(seq=anchored_seq, problem=f"entry {anchored_seq} does not have the hash the head anchor "
                              f"{anchor} recorded: it was rewritten (or deleted and replaced)")]
    if last_seq > anchored_seq:
        return [LedgerProblem(seq=anchored_seq + 1, problem=f"entries {anchored_seq + 1}..{last_seq} are not covered "
                              f"by the head anchor {anchor} (entry {anchored_seq}): they were added without "
                              "bastion updating the anchor (inserted into the table, or a process stopped between "
                              "its commit and the anchor update); check them, then accept them with reanchor")]
    return []


def read_anchor(anchor: Path, database: str | None, *, warnings: list[str] | None = None) -> tuple[int, str] | None:
    """The ``(seq, hash)`` that ``anchor`` records for ``database`` (its key, see ``DATABASE_KEY``), or ``None``.

    A SQLite database is keyed by its absolute path, so when the folder that holds both the database and the anchor
    is moved, its entry is found under the old path: the one entry for a file of the same name that no longer
    exists. ``warnings``, if given, then gets a line saying so.
    """
    heads = _read_anchor_file(anchor)
    key = database or ""
    if key not in heads:
        moved_from = _moved_sqlite_key(heads, key, anchor)
        if moved_from is not None:
            key = moved_from
            if warnings is not None:
                warnings.append(f"the head anchor {anchor} names this database at its old place "
                                f"({moved_from.removeprefix(_SQLITE)}); it was read from there")
    head = heads.get(key)
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        return None
    return head["seq"], head["hash"]


_SQLITE = "sqlite:///"


def _moved_sqlite_key(heads: dict[str, Any], key: str, anchor: Path) -> str | None:
    """The old key of a SQLite database that sits beside ``anchor`` and was moved with it, if exactly one fits."""
    if not key.startswith(_SQLITE) or Path(key.removeprefix(_SQLITE)).parent != anchor.parent.resolve():
        return None
    name = Path(key.removeprefix(_SQLITE)).name
    old = [other for other in heads if other.startswith(_SQLITE) and Path(other.removeprefix(_SQLITE)).name == name
           and not Path(other.removeprefix(_SQLITE)).exists()]
    return old[0] if len(old) == 1 else None


def _read_anchor_file(anchor: Path) -> dict[str, Any]:
    try:
        heads = json.loads(anchor.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise InputError(f"the ledger head anchor {anchor} is unreadable ({error}); it was damaged. Restore it "
                         "from a backup, or delete it to check the chain without it") from None
    return heads if isinstance(heads, dict) else {}


def write_anchor(anchor: Path, database: str | None, seq: int, digest: str, *, force: bool = False,
                 sync: bool = True) -> None:
    """Write the head atomically (temp file + rename); never moves it back unless ``force``. ``sync=False``
    skips the flush to disk (the file then survives the process dying, not the machine losing power)."""
    heads = _read_anchor_file(anchor)
    key = database or ""
    old = heads.get(key)
    if not force and isinstance(old, dict) and isinstance(old.get("seq"), int) and old["seq"] >= seq:
        return
    heads[key] = {"seq": seq, "hash": digest, "written": canonical_time(datetime.now(timezone.utc))}
    anchor.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(anchor, json.dumps(heads, indent=1, sort_keys=True).encode("utf-8"), sync=sync)
