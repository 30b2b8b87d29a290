"""The store, opened read-only for ``tuner serve``.

The dashboard runs beside a study that is writing, and on a fleet's shared database,
so it must be unable to write, not merely careful not to:

- SQLite: the file is opened with ``mode=ro`` (a URI filename), so the library itself
  refuses every write; WAL lets it read while the tuner writes. No folder is created,
  no migration runs, no journal mode is set.
- PostgreSQL: every transaction starts ``READ ONLY`` (``default_transaction_read_only``
  in the connection's options), so the server refuses writes.

The schema is checked, not migrated: a database at another revision is refused with
the command that upgrades it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.orm import Session, sessionmaker


class ReadOnlyStore:
    """An engine that cannot write, and sessions over it (one per request)."""

    def __init__(self, engine: "Engine", url: "URL") -> None:
        from sqlalchemy.orm import sessionmaker

        self.engine = engine
        self.url = url
        self._sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)

    @property
    def where(self) -> str:
        """The database as messages show it: a path, or the URL without its password."""
        from tuner.store._engine import describe

        return describe(self.url)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @contextmanager
    def session(self) -> Iterator["Session"]:
        """One read transaction; database errors the environment causes become StoreErrors."""
        from sqlalchemy.exc import SQLAlchemyError

        from tuner.store._engine import is_environment_error, store_error

        try:
            with self._sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            if is_environment_error(exc):
                raise store_error(exc, self.url) from exc
            raise

    def optuna_storage_kwargs(self) -> dict[str, Any]:
        """``optuna.storages.RDBStorage`` arguments that open the same database read-only."""
        rendered = self.url.render_as_string(hide_password=False)
        return {
            "url": rendered,
            "engine_kwargs": _engine_kwargs(self.url),
            "skip_table_creation": True,
            "skip_compatibility_check": True,
        }

    def close(self) -> None:
        self.engine.dispose()


def open_readonly(url: str | None) -> ReadOnlyStore:
    """The store at ``url`` (None: the default database), read-only, its schema checked."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

    from tuner.store._engine import describe, is_environment_error, resolve_url, sqlite_file, store_error

    parsed = resolve_url(url)
    if parsed.get_backend_name() == "sqlite":
        file = sqlite_file(parsed)
        if file is None:
            raise StoreError(
                f"{describe(parsed)} cannot be served: an in-memory database has nothing to show; "
                "pass --db with a database file"
            )
        if not file.is_file():
            raise StoreError(f"no tuner database at {file}; run `tuner auto` first or pass --db with the database")
    try:
        engine = create_engine(_engine_url(parsed), **_engine_kwargs(parsed))
    except NoSuchModuleError:
        raise StoreError(
            f"no database driver for {parsed.drivername!r} URLs; pass --db sqlite:///... or postgresql://..."
        ) from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"the database driver for {parsed.drivername} URLs ({exc.name}) is not installed; "
            "pip install 'psycopg[binary]'"
        ) from None
    store = ReadOnlyStore(engine, parsed)
    try:
        with engine.connect() as connection:
            _check_schema(connection, parsed)
    except SQLAlchemyError as exc:
        store.close()
        if is_environment_error(exc):
            raise store_error(exc, parsed) from exc
        raise
    except BaseException:
        store.close()
        raise
    return store


def _engine_url(url: "URL") -> "URL | str":
    # SQLite connects through the creator below; the URL only picks the dialect.
    return "sqlite://" if url.get_backend_name() == "sqlite" else url


def _engine_kwargs(url: "URL") -> dict[str, Any]:
    from sqlalchemy.pool import QueuePool

    if url.get_backend_name() == "sqlite":
        from tuner.store._engine import read_only_connector

        # The store's read-only connection (shared with `tuner best` and the readers): a
        # URI filename with mode=ro makes SQLite itself refuse writes (and not create the
        # file); where the folder cannot be written (a read-only image) it is immutable=1.
        # "sqlite://" would get a single-connection pool (in-memory); a file shares a pool
        # across the server's worker threads.
        return {
            "creator": read_only_connector(Path(url.database or "")),
            "poolclass": QueuePool,
            "pool_size": 4,
            "max_overflow": 4,
        }
    return {
        "pool_pre_ping": True,
        # libpq's options: every transaction of every connection is READ ONLY.
        "connect_args": {"options": "-c default_transaction_read_only=on"},
    }


def _check_schema(connection: Any, url: "URL") -> None:
    from sqlalchemy import inspect, text

    from tuner.store._engine import describe
    from tuner.store._schema import SCHEMA_HEAD, VERSION_TABLE

    where = describe(url)
    if not inspect(connection).has_table(VERSION_TABLE):
        raise StoreError(
            f"{where} has no tuner tables; run `tuner auto` with --db {where} first, "
            "or pass --db with the tuner's database"
        )
    revisions = sorted(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if revisions != [SCHEMA_HEAD]:
        found = ", ".join(revisions) or "none"
        raise StoreError(
            f"the database {where} has schema revision {found}, this tuner serves {SCHEMA_HEAD}; `tuner serve` "
            f"never writes, so upgrade it once with `tuner history --all-machines --db {where}` (or upgrade tuner "
            "when the database is newer)"
        )
