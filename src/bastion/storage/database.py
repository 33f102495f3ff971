"""The database bastion keeps its records in: SQLite under ``.bastion/`` by default, any SQLAlchemy URL
(PostgreSQL for a shared deployment) through ``BASTION_DATABASE_URL``.

The schema is created and upgraded by the Alembic migrations shipped in ``storage/migrations``; they
run when a database is opened, so a user never needs an ``alembic.ini``. Nothing is created at import.

Example::

    database = open_database(home=Path(".bastion"))
    with database.transaction() as session:
        append(session, action="dataset.commit", subject="dataset:train", actor="alice", payload={})
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from bastion.core.errors import InputError

#: Environment variables: the folder bastion keeps its state in, and a database URL that overrides
#: the SQLite file in that folder.
HOME_ENV = "BASTION_HOME"
DATABASE_URL_ENV = "BASTION_DATABASE_URL"
#: The PostgreSQL advisory lock held while the schema is created or upgraded ("bastion-schema" folded to 63 bits).
MIGRATION_LOCK_KEY = int.from_bytes(b"bastion-schema", "big") % (1 << 63)
DEFAULT_HOME = Path(".bastion")
MIGRATIONS = Path(__file__).parent / "migrations"

#: ``Session.info`` key holding the ledger's head anchor file (see ``bastion.storage.ledger``).
LEDGER_HEAD_KEY = "bastion.ledger_head"
#: ``Session.info`` key naming the database in that anchor file.
DATABASE_KEY = "bastion.database"


def bastion_home(home: str | Path | None = None) -> Path:
    """The folder bastion keeps its state in: ``home`` if given, else ``$BASTION_HOME``, else ``./.bastion``.

    The folder is not created here; whatever writes into it creates it.
    """
    if home is not None:
        return Path(home)
    from_env = os.environ.get(HOME_ENV)
    return Path(from_env) if from_env else DEFAULT_HOME


def database_url(home: str | Path | None = None) -> str:
    """``$BASTION_DATABASE_URL`` if set, else the SQLite file ``<home>/bastion.db`` (see ``bastion_home``)."""
    from_env = os.environ.get(DATABASE_URL_ENV)
    if from_env:
        return from_env
    return f"sqlite:///{(bastion_home(home) / 'bastion.db').absolute().as_posix()}"


@dataclass
class Database:
    """An open database: the engine, a session factory, and the home folder of its ledger anchor.

    Attributes:
        url: the URL it was opened with (the password, if any, is never logged or shown).
        engine: the SQLAlchemy engine.
        sessions: factory of ``Session`` objects; prefer ``transaction()``.
        home: bastion's home folder (``ledger.head``, ``objects/``, ``quarantine/`` live there).
    """

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    home: Path

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def in_memory(self) -> bool:
        """A private in-memory SQLite database (``sqlite://``): it dies with the process, so it has no anchors."""
        return _in_memory(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (the SQLite file can then be moved or deleted)."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def open_database(url: str | None = None, *, home: str | Path | None = None, upgrade: bool = True,
                  create: bool = True, sync_every_commit: bool = True) -> Database:
    """Open (and create or upgrade, unless ``upgrade=False``) the database at ``url``.

    Args:
        url: a SQLAlchemy URL; ``None`` means ``database_url(home)``. For SQLite, the file's folder is
            created, foreign keys are enforced and the journal is in WAL mode (readers do not block the
            writer). ``sqlite://`` opens a private in-memory database (tests).
        home: bastion's home folder (default ``bastion_home()``): the ledger's head anchor lives there.
        upgrade: run the Alembic migrations up to the newest schema.
        create: ``False`` to open for reading: nothing is created, and a SQLite database that is not
            there is an ``InputError`` naming the home.
        sync_every_commit: SQLite only. ``True`` (default) flushes every commit to the disk; ``False``
            (``PRAGMA synchronous=NORMAL``, the gateway's audit log) leaves that to WAL checkpoints: a commit
            survives the process being killed, but not the machine losing power.

    Raises:
        InputError: the URL cannot be parsed or names a driver that is not installed; the home is a
            file; ``create=False`` and there is no database.
    """
    home_path = bastion_home(home)
    if home_path.exists() and not home_path.is_dir():
        raise InputError(f"bastion's home {home_path} is a file, not a folder: check --home or ${HOME_ENV}")
    url = url or database_url(home_path)
    if not create:
        _require_existing(url, home_path)
    engine = _create_engine(url, create=create, sync_every_commit=sync_every_commit)
    anchor = None if _in_memory(engine) else home_path / "ledger.head"  # an in-memory ledger dies with the process
    from bastion.storage.ledger import LedgerSession  # its listeners keep the anchor up to date

    sessions: sessionmaker[Session] = sessionmaker(
        engine, class_=LedgerSession, expire_on_commit=False,
        info={LEDGER_HEAD_KEY: anchor, DATABASE_KEY: _database_key(engine)})
    database = Database(url=url, engine=engine, sessions=sessions, home=home_path)
    if upgrade:
        try:
            upgrade_schema(engine)
        except BaseException:
            engine.dispose()  # the caller never gets the database, so nothing else would close its connections
            raise
    return database


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Run the shipped Alembic migrations on ``engine`` up to ``revision`` (no-op when already there)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    scripts = ScriptDirectory.from_config(config)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Gateways starting together on one database migrate it in turn: the lock is held to the commit,
            # and whoever waited finds the schema at the target and returns.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        current = MigrationContext.configure(connection).get_current_heads()
        target = scripts.get_heads() if revision == "head" else [revision]
        if set(current) == set(target):
            return
        known = {script.revision for script in scripts.walk_revisions()}
        unknown = [rev for rev in current if rev not in known]
        if unknown:
            raise InputError(f"the database {engine.url.render_as_string(hide_password=True)} has schema revision "
                             f"{', '.join(unknown)}, newer than this bastion knows; upgrade bastion")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _require_existing(url: str, home: Path) -> None:
    """Raise unless the SQLite file ``url`` names is there (other databases are checked by connecting)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # _create_engine says what is wrong with it
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).is_file():
        raise InputError(f"no bastion store at {home}: check --home or ${HOME_ENV} (`bastion data commit` creates "
                         "one for datasets, `bastion registry grant` or `register` for a registry)")


def _create_engine(url: str, *, create: bool = True, sync_every_commit: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise InputError(
            f"cannot parse the database URL {url!r}: {error}. Use e.g. sqlite:///path/bastion.db or "
            f"postgresql+psycopg://user@host/bastion (set {DATABASE_URL_ENV})"
        ) from None
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            options["poolclass"] = StaticPool  # one connection, so every session sees the same data
            options["connect_args"] = {"check_same_thread": False}
        else:
            if create:
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise InputError(f"cannot create the database {database}: a file stands where its folder "
                                     f"should be; check --home or ${HOME_ENV}") from None
            options["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise InputError(
            f"the database URL {parsed.render_as_string(hide_password=True)!r} needs a driver that is not "
            f"installed ({error}); install it (e.g. pip install 'psycopg[binary]') or use sqlite"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if not sync_every_commit:
            event.listen(engine, "connect", _sqlite_sync_at_checkpoints)
    return engine


def _in_memory(engine: Engine) -> bool:
    return engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_sync_at_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _database_key(engine: Engine) -> str:
    """A name for the database that does not depend on how its URL was spelled (SQLite: the absolute path)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(url.database).resolve().as_posix()}"
    return url.render_as_string(hide_password=True)
