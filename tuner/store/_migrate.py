"""Bring a database's ``tuner_*`` tables to the schema this tuner knows.

Alembic runs programmatically (no alembic.ini at run time) over the store's own
engine, so the SQLite hooks apply and the whole upgrade is one transaction: a kill
half-way leaves the database at its old revision, never between two.
Our version table is ``tuner_alembic_version``; Optuna keeps ``alembic_version``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, Engine

from tuner.errors import StoreError
from tuner.paths import migrations_dir
from tuner.store._engine import WRITE_OPTION, describe
from tuner.store._schema import SCHEMA_HEAD, VERSION_TABLE

# The PostgreSQL advisory lock that serialises migrations (any fixed 64-bit number;
# this one spells "tuner" in ASCII).
MIGRATION_LOCK_KEY = 0x74756E6572

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions stamped in the database; empty for a database without our tables."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return tuple(sorted(rows))


def alembic_config(connection: Connection | None = None) -> "Config":
    """An Alembic config for db/; env.py runs on ``connection`` when one is given."""
    from alembic.config import Config

    config = Config()
    # '%' is interpolation syntax in Alembic's config values.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["connection"] = connection
    return config


def script_directory() -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def migrate(engine: Engine, url: URL) -> None:
    """Upgrade to head; refuse a database written by a newer tuner."""
    with engine.connect() as connection:
        revisions = current_revisions(connection)
    if revisions == (SCHEMA_HEAD,):
        return  # the usual case: no Alembic import, no write lock
    check_known(revisions, url)
    from alembic import command

    # The write lock is taken before Alembic reads the revision, so two processes
    # opening a fresh database migrate it once: the second finds it at head.
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as connection:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # PostgreSQL has no database-wide write lock (SQLite's BEGIN IMMEDIATE):
                # the machines of a fleet opening a new database at once take turns
                # here; the lock ends with the transaction.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            command.upgrade(alembic_config(connection), "head")


def check_known(revisions: tuple[str, ...], url: URL) -> None:
    """Refuse a database stamped with a revision this tuner does not know (a newer tuner's)."""
    script = script_directory()
    known = {r.revision for r in script.walk_revisions()}
    for revision in revisions:
        if revision not in known:
            raise StoreError(
                f"the database {describe(url)} has schema revision {revision!r}, newer than this tuner knows "
                f"(its newest is {script.get_current_head()!r}): upgrade tuner (pip install -U tuner) "
                "or pass --db with another database"
            )
