"""API keys: created once and shown once, stored only as a keyed hash, with a role, scopes, limits and expiry.

A key reads ``bst_`` followed by 43 URL-safe characters (32 random bytes). The database keeps
``HMAC-SHA256(secret, key)``: a stolen table without the gateway's secret does not let anyone test
guessed keys. Roles: ``client`` (inference, its own review results), ``reviewer`` (the review queue),
``admin`` (everything, keys and the audit log included).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.storage.tables import ApiKeyRow

Role = Literal["client", "reviewer", "admin"]
ROLES: tuple[Role, ...] = ("client", "reviewer", "admin")
OUTPUT_POLICIES = ("full", "top-k", "rounded", "label")
KEY_PREFIX = "bst_"
_KEY_SHAPE = re.compile(r"^bst_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class KeyInfo:
    """What the gateway knows about a key once authenticated (never its secret)."""

    id: str
    name: str
    role: Role
    scopes: tuple[str, ...]
    rate: str | None
    budget: str | None
    output: str | None
    expires_at: datetime | None
    revoked: bool

    def may_query(self, model: str) -> bool:
        """Whether the key's scopes include ``model``."""
        return "*" in self.scopes or model in self.scopes

    def expired(self, now: datetime | None = None) -> bool:
        """Whether ``expires_at`` has passed."""
        return self.expires_at is not None and (now or datetime.now(timezone.utc)) >= self.expires_at


def hash_key(secret: str, key: str) -> str:
    """Hex HMAC-SHA256 of ``key`` under the gateway's ``secret``."""
    return hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def check_limit(value: str | None, what: str) -> str | None:
    """``value`` if it is a ``limits`` string (``"100/minute"``, ``"50000/day"``), else an ``InputError``."""
    if value is None:
        return None
    try:
        parse(value)
    except ValueError:
        raise InputError(f"{what} {value!r} is not a limit; write it as COUNT/PERIOD, e.g. 100/minute or "
                         "50000/day (periods: second, minute, hour, day, month, year)") from None
    return value


def create_key(session: Session, *, secret: str, name: str, role: str = "client", scopes: list[str] | None = None,
               rate: str | None = None, budget: str | None = None, output: str | None = None,
               expires_at: datetime | None = None, actor: str) -> tuple[ApiKeyRow, str]:
    """Add a key; returns its row and the key itself, which is not stored and cannot be shown again.

    Args:
        name: who the key is for (``fraud-team``).
        role: ``client``, ``reviewer`` or ``admin``.
        scopes: model names the key may query; default every model (``["*"]``).
        rate, budget: ``limits`` strings; ``None`` falls back to the gateway's defaults.
        output: the key's output policy (``full``, ``top-k``, ``rounded``, ``label``); ``None``: the policy's.
        expires_at: when the key stops working (timezone-aware); ``None``: never.
        actor: who created it, for the record.

    Raises:
        InputError: an empty name, unknown role or output policy, a malformed limit, an expiry in the past.
    """
    if not name.strip():
        raise InputError("a key needs a --name saying who it is for")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if output is not None and output not in OUTPUT_POLICIES:
        raise InputError(f"unknown output policy {output!r}; choose one of {', '.join(OUTPUT_POLICIES)}")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=timezone.utc)
        if expires_at <= datetime.now(timezone.utc):
            raise InputError(f"the expiry {expires_at.isoformat()} is in the past")
    scopes = [s.strip() for s in (scopes or ["*"]) if s.strip()] or ["*"]
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(id="key_" + secrets.token_hex(8), name=name.strip(), role=role, scopes=scopes,
                    key_hash=hash_key(secret, key), rate=check_limit(rate, "--rate"),
                    budget=check_limit(budget, "--budget"), output=output, created_at=datetime.now(timezone.utc),
                    created_by=actor, expires_at=expires_at, revoked_at=None)
    session.add(row)
    session.flush()
    return row, key


def existing_key(session: Session, key_id: str) -> ApiKeyRow:
    """The key with id ``key_id`` (revoked and expired ones too). Raises ``InputError`` for an unknown id."""
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise InputError(f"no key {key_id!r}; `bastion keys list` shows the keys")
    return row


def revoke_key(session: Session, key_id: str) -> ApiKeyRow:
    """Mark a key revoked (kept for the audit trail). Raises ``InputError`` for an unknown id."""
    row = existing_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(timezone.utc)
    return row


def list_keys(session: Session) -> list[ApiKeyRow]:
    """Every key, oldest first."""
    return list(session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)))


def key_info(row: ApiKeyRow) -> KeyInfo:
    """The immutable view of a row the gateway works with."""
    expires = row.expires_at
    if expires is not None and expires.tzinfo is None:  # SQLite gives naive UTC times back
        expires = expires.replace(tzinfo=timezone.utc)
    return KeyInfo(id=row.id, name=row.name, role=row.role, scopes=tuple(row.scopes), rate=row.rate,
                   budget=row.budget, output=row.output, expires_at=expires, revoked=row.revoked_at is not None)


class KeyCache:
    """Looks keys up by hash, caching each answer for ``ttl`` seconds (revocations elsewhere land within it).

    Safe to call from several threads.
    """

    def __init__(self, sessions, *, secret: str, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._secret = secret
        self._ttl = ttl
        self._entries: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, key: str) -> KeyInfo | None:
        """The key's info, or ``None`` when no key has that value (malformed keys never reach the database)."""
        if not _KEY_SHAPE.match(key):
            return None
        digest = hash_key(self._secret, key)
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with self._sessions() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest)).first()
            info = None if row is None else key_info(row)
        with self._lock:
            self._entries[digest] = (now, info)
        return info

    def forget(self) -> None:
        """Drop every cached answer (after a revocation in this process)."""
        with self._lock:
            self._entries.clear()
