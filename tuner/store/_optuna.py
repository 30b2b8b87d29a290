"""Optuna's own tables, beside ours in the same database: opened with their schema
checked first.

Optuna keeps its schema revision in ``alembic_version`` (ours is
``tuner_alembic_version``). A revision this Optuna does not know was written by a
newer Optuna; a known one that is not its head needs `optuna storage upgrade`. Either
way the study cannot use the tables, and Optuna itself would say so with a
RuntimeError and a traceback deep inside a run: here it is one line (a
``StoreError``, exit 2) before anything is read or written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tuner.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


# The PostgreSQL advisory lock under which Optuna creates its tables (any fixed 64-bit
# number; this one spells "optuna").
OPTUNA_TABLES_LOCK_KEY = 0x6F7074756E61


@contextmanager
def _creating_tables(url: URL, rendered: str, read_only: bool) -> Iterator[None]:
    """On PostgreSQL, one process at a time creates Optuna's tables: machines of a fleet
    starting at once on a new database (`tuner auto --join`) otherwise race in Optuna's
    CREATE TABLE and its ``alembic_version`` insert, and all but one fail with a
    duplicate key. (SQLite serialises writers itself; a read-only open creates nothing.)
    The lock is a session's: it ends with its connection, also when the process dies."""
    if read_only or url.get_backend_name() != "postgresql":
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(rendered, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": OPTUNA_TABLES_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": OPTUNA_TABLES_LOCK_KEY})
    finally:
        engine.dispose()


def _rdb_storage(url: URL, rendered: str, engine_kwargs: dict[str, Any], read_only: bool) -> Any:
    """``RDBStorage``, its tables created by one process at a time: under an advisory
    lock on PostgreSQL; on SQLite, whose DDL Optuna runs outside any lock, a process
    that lost the race to another creating the same tables ("already exists", a
    duplicate version row) tries again, and finds them made."""
    import optuna

    for attempt in range(5):
        try:
            with _creating_tables(url, rendered, read_only):
                return optuna.storages.RDBStorage(
                    rendered, engine_kwargs=engine_kwargs, skip_compatibility_check=True, skip_table_creation=read_only
                )
        except Exception as exc:
            if attempt == 4 or not _lost_creation_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _lost_creation_race(exc: BaseException) -> bool:
    current: BaseException | None = exc
    while current is not None:
        text = str(current).lower()
        if "already exists" in text or "unique constraint" in text or "duplicate key" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def optuna_storage(url: URL, read_only: bool = False) -> Any:
    """``optuna.storages.RDBStorage`` on ``url``, its schema revision checked; each
    pooled connection is tested before use (a server that went away between two
    trials). ``read_only``: through the store's read-only connection (nothing created)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.store._engine import describe, is_environment_error, read_only_connector, sqlite_file, store_error

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    rendered = url.render_as_string(hide_password=False)
    file = sqlite_file(url)
    if read_only and file is not None:
        from sqlalchemy.pool import QueuePool

        engine_kwargs = {"creator": read_only_connector(file), "poolclass": QueuePool, "pool_pre_ping": True}
        rendered = "sqlite://"
    elif read_only:
        engine_kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    try:
        storage = _rdb_storage(url, rendered, engine_kwargs, read_only)
        current, head, known = storage.get_current_version(), storage.get_head_version(), storage.get_all_versions()
    except SQLAlchemyError as exc:
        if is_environment_error(exc):
            raise store_error(exc, url) from exc
        raise
    except optuna.exceptions.StorageInternalError as exc:
        cause = exc.__cause__
        if isinstance(cause, SQLAlchemyError) and is_environment_error(cause):
            raise store_error(cause, url) from exc
        raise
    if current == head:
        return storage
    where = describe(url)
    if current in known:
        raise StoreError(
            f"the database {where} has Optuna's tables at schema revision {current!r}, older than this Optuna "
            f"{optuna.__version__} uses ({head!r}): upgrade them once with `optuna storage upgrade --storage URL` "
            "(back the database up first), or pass --db with another database"
        )
    raise StoreError(
        f"the database {where} has Optuna's tables at schema revision {current!r}, which Optuna "
        f"{optuna.__version__} does not know (a newer Optuna wrote it; this one's newest is {head!r}): upgrade "
        "optuna (pip install -U optuna) or pass --db with another database"
    )
