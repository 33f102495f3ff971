"""Alembic environment for bastion's schema, run programmatically by ``bastion.storage.database``.

``upgrade_schema`` passes an open connection in ``config.attributes["connection"]``. A developer can
also run Alembic by hand with ``sqlalchemy.url`` set in a config (e.g. to autogenerate a migration).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bastion.storage.tables import Base

config = context.config


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).begin() as opened:
        _run(opened)
