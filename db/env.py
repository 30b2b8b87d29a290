"""Alembic environment for the tuner's ``tuner_*`` tables.

Two callers:
- the tuner itself (tuner/store/_migrate.py) passes its open connection, already in
  a write transaction, in ``config.attributes["connection"]``;
- a developer runs ``alembic -c db/alembic.ini ...`` (see docs/store.md), which
  opens the ini's scratch database, or ``-x url=...``.

Optuna's tables live in the same database with their own ``alembic_version``: ours
is ``tuner_alembic_version``, and autogenerate looks at ``tuner_*`` tables only, so
it never proposes to drop Optuna's.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from tuner.store._schema import VERSION_TABLE, Base, FiniteFloat, SafeJSON, UTCDateTime

config = context.config
target_metadata = Base.metadata
version_table = config.get_main_option("version_table") or VERSION_TABLE

# Migrations are frozen history: autogenerate writes plain sqlalchemy types, not the
# tuner's TypeDecorators (which only convert values in Python; the DDL is the same).
_PLAIN_TYPES: dict[type, str] = {SafeJSON: "sa.JSON()", FiniteFloat: "sa.Float()", UTCDateTime: "sa.DateTime()"}


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table":
        return name is not None and name.startswith("tuner_")
    return True


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    if type_ == "type":
        for cls, rendered in _PLAIN_TYPES.items():
            if isinstance(obj, cls):
                return rendered
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=version_table,
        include_name=include_name,
        render_item=render_item,
        render_as_batch=True,  # SQLite alters a table by copying it
        compare_type=True,
        # True on both dialects we run: the tuner's SQLite hooks make DDL transactional.
        transactional_ddl=True,
        **kwargs,
    )


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url") or ""


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        # The caller's transaction is open, so this begins and commits nothing.
        with context.begin_transaction():
            context.run_migrations()
        return

    from tuner.store._engine import WRITE_OPTION, make_engine, prepare_sqlite_folder, resolve_url

    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    url = resolve_url(_url())
    prepare_sqlite_folder(url)
    engine = make_engine(url)  # the tuner's SQLite hooks: WAL, foreign keys, BEGIN IMMEDIATE
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            with conn.begin():
                _configure(connection=conn)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
