"""Storage shared by every part of bastion: the database (SQLAlchemy + Alembic migrations), the
hash-chained ledger of operations, and the content-addressed object store on disk.

Nothing here opens a connection or touches the disk at import time; call ``open_database``.
"""

from bastion.storage.database import Database, bastion_home, database_url, open_database
from bastion.storage.ledger import LedgerCheck, append, current_actor, verify
from bastion.storage.objects import CorruptObjectError, MissingObjectError, ObjectStore

__all__ = [
    "CorruptObjectError",
    "Database",
    "LedgerCheck",
    "MissingObjectError",
    "ObjectStore",
    "append",
    "bastion_home",
    "current_actor",
    "database_url",
    "open_database",
    "verify",
]
