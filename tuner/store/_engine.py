"""Database URLs, the engine, and turning database errors into one-line StoreErrors.

Everything SQLite-specific lives in ``_sqlite_hooks``: WAL journal (readers never
wait for the tuner writing), foreign keys on, a busy timeout, and transactions that
SQLAlchemy begins itself so that DDL is transactional and a write can take the write
lock up front (``BEGIN IMMEDIATE``). The rest is portable SQL, so a PostgreSQL URL
works the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from tuner import paths
from tuner.errors import StoreError

# What needs no SQLAlchemy lives in _dbapi (the lean read path of `tuner best` uses it
# too); imported from here as before.
from tuner.store._dbapi import BUSY_TIMEOUT_S as BUSY_TIMEOUT_S
from tuner.store._dbapi import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from tuner.store._dbapi import READ_ONLY_OPTIONS
from tuner.store._dbapi import folder_writable as folder_writable
from tuner.store._dbapi import read_only_connector as read_only_connector
from tuner.store._dbapi import read_only_uri as read_only_uri

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# The PostgreSQL driver the tuner installs (pip install "tuner[postgres]"): a bare
# postgresql:// URL means it, not SQLAlchemy's default psycopg2.
POSTGRES_DRIVER = "postgresql+psycopg"
# libpq drivers, which understand connect_timeout.
_LIBPQ_DRIVERS = ("postgresql+psycopg", "postgresql+psycopg2")
# Execution option that marks a connection as about to write (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "tuner_write"

# Driver modules SQLAlchemy may ask for, and what to pip install for each.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
}


def resolve_url(url: str | None) -> URL:
    """The URL to open: ``None`` is the default database, a bare path means SQLite.

    A SQLite file path is made absolute, so ``Store.url`` opens the same file from any
    working directory (Optuna in this process, a worker, ``tuner serve``). A bare
    ``postgresql://`` gets the psycopg driver, and a libpq URL a connect timeout
    (``CONNECT_TIMEOUT_S``) unless it sets one.
    """
    raw = paths.default_db_url() if url is None else url.strip()
    if raw == ":memory:":
        raw = "sqlite://"
    elif "://" not in raw:
        raw = f"sqlite:///{Path(raw).expanduser().absolute()}"
    try:
        parsed = make_url(raw)
    except ArgumentError:
        shown = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", raw)  # user:password@ -> user:***@
        raise StoreError(
            f"{shown!r} is not a database URL; pass --db sqlite:////path/to/tuner.db or postgresql://user@host/dbname"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"database URL {describe(parsed)!r}: the tuner supports SQLite and PostgreSQL only; "
            "pass --db sqlite:///... or postgresql://..."
        )
    file = sqlite_file(parsed)
    if file is not None:
        parsed = parsed.set(database=str(file.expanduser().absolute()))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    if parsed.drivername in _LIBPQ_DRIVERS and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None (in-memory, or not SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def describe(url: URL | str) -> str:
    """The URL as a message shows it: a file path for SQLite, no password otherwise.

    libpq also takes a password in the query (``?password=...``): masked as well.
    A string that is not a URL is shown as ``<not a database URL>``, since it may
    still hold a password.
    """
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<not a database URL>"
    file = sqlite_file(url)
    if file is not None:
        return str(file)
    if url.get_backend_name() == "sqlite":
        return f"sqlite in-memory database {url.database or ':memory:'}"
    if "password" in url.query:
        url = url.update_query_dict({"password": "***"})
    return url.render_as_string(hide_password=True)


def prepare_sqlite_folder(url: URL) -> None:
    """Create the database file's folder, or say which path cannot be created."""
    file = sqlite_file(url)
    if file is None:
        return
    folder = file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise StoreError(
            f"cannot create the database folder {folder} ({why}); pass --db with a writable location"
        ) from None
    if not folder.is_dir():
        raise StoreError(
            f"cannot create the database folder {folder} (not a directory); pass --db with a writable location"
        )


def make_engine(url: URL) -> Engine:
    """An engine for ``url``; a missing driver or unknown scheme becomes a StoreError."""
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # sqlite3's timeout is SQLite's busy timeout: wait for a lock instead of failing.
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
        if sqlite_file(url) is None:
            # An in-memory database lives as long as its one connection: share it.
            from sqlalchemy.pool import StaticPool

            kwargs["poolclass"] = StaticPool
            kwargs["connect_args"]["check_same_thread"] = False
    else:
        # A server that went away between two trials: test the connection first.
        # (resolve_url put the connect timeout in the URL, so the driver gets it.)
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise StoreError(
            f"no database driver for {url.drivername!r} URLs; pass --db sqlite:///... or postgresql://..."
        ) from None
    except ModuleNotFoundError as exc:
        package = _DRIVER_PACKAGES.get((exc.name or "").split(".")[0], exc.name)
        raise StoreError(
            f"the database driver for {url.drivername} URLs ({exc.name}) is not installed; pip install {package}"
        ) from None
    if url.get_backend_name() == "sqlite":
        _sqlite_hooks(engine, in_memory=sqlite_file(url) is None)
    return engine


def make_read_only_engine(url: URL) -> Engine:
    """An engine that cannot write: what `tuner best`, `launch`, `history`, `export` and
    ``load_best`` read through, so a deployment's read-only image serves them.

    SQLite opens the file with ``mode=ro`` (SQLite itself refuses every write and never
    creates the file); where the file's folder cannot be written (a read-only file
    system, an image's folder owned by another user), a WAL database cannot make its
    shared-memory file, so it is opened ``immutable=1`` instead: nothing can change it
    there. PostgreSQL: every transaction starts READ ONLY.
    """
    from sqlalchemy.pool import QueuePool

    file = sqlite_file(url)
    if file is None:
        if url.get_backend_name() == "sqlite":
            raise ValueError("an in-memory database cannot be opened read-only")
        make_engine(url).dispose()  # a missing driver, said as make_engine says it
        return create_engine(url, pool_pre_ping=True, connect_args={"options": READ_ONLY_OPTIONS})

    return create_engine(
        "sqlite://", creator=read_only_connector(file), poolclass=QueuePool, pool_size=2, max_overflow=4
    )


def _sqlite_hooks(engine: Engine, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from sqlite3 (it begins only before DML, so
        # DDL would not be transactional and a read-then-write could not lock first).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if not in_memory:
                # Persistent in the file: Optuna's own connections get WAL too.
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A write takes the write lock at BEGIN: in WAL, a read transaction that
        # later tries to write fails at once if another process wrote meanwhile,
        # whereas BEGIN IMMEDIATE waits for the busy timeout.
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_environment_error(exc: BaseException) -> bool:
    """Errors the user's environment causes (a locked, unreadable, unreachable database).

    Integrity and programming errors are bugs in the tuner and keep their traceback,
    except when no connection was made (no statement): then the URL is at fault,
    e.g. ``?foo=bar``, which psycopg refuses as a ProgrammingError.
    """
    if isinstance(exc, DBAPIError) and exc.statement is None:
        return True
    state = _sqlstate(exc)
    if state is not None and state.startswith(_ENVIRONMENT_SQLSTATES):
        return True
    return isinstance(exc, OperationalError) or type(exc) is DatabaseError


# PostgreSQL error codes (SQLSTATE) that the server, the role or the database's other
# contents cause: connection (08), login (28), no such database (3D), resources such
# as a full disk (53), shutdown (57), system (58), a read-only standby (25006), no
# right to create or write our tables (42501), a table of another program in the
# way (42P07). psycopg raises some of them as ProgrammingError.
_ENVIRONMENT_SQLSTATES = ("08", "28", "3D", "53", "57", "58", "25006", "42501", "42P07")


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3, psycopg2
    return state if isinstance(state, str) else None


def dbapi_store_error(orig: Exception, url: URL, statement: str | None, base: type[Exception]) -> StoreError | None:
    """A DB-API driver's exception raised outside SQLAlchemy (the lean read path of
    `tuner best`, tuner.store._reader) as SQLAlchemy would have wrapped it, then judged
    and worded as every other: the StoreError, or None for a bug (re-raise it).
    ``statement``: None where no connection was made; ``base``: the driver's ``Error``."""
    wrapped = DBAPIError.instance(statement, None, orig, base)
    return store_error(wrapped, url) if is_environment_error(wrapped) else None


def store_error(exc: SQLAlchemyError, url: URL) -> StoreError:
    """One line that says what is wrong with the database and what to do."""
    where = describe(url)
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    text = detail.lower()
    if url.get_backend_name() == "sqlite":
        if "file is not a database" in text or "file is encrypted" in text:
            return StoreError(f"{where} is not a SQLite database; move it away or pass --db with another path")
        if "malformed" in text or "corrupt" in text:
            return StoreError(
                f"the database {where} is corrupt ({detail}); restore it from a backup or pass --db with another path"
            )
        if "unable to open database file" in text:
            return StoreError(f"cannot open or create the database file {where}; pass --db with a writable location")
        if "readonly database" in text or "read-only" in text:
            return StoreError(f"the database {where} is read-only; make it writable or pass --db with another path")
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the database {where} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s; retry when it is done"
            )
        if "disk" in text or "full" in text:
            from tuner.errors import free_mb

            folder = sqlite_file(url)
            free = free_mb(folder.parent) if folder is not None else None
            return StoreError(
                f"no space left on {folder.parent if folder is not None else where} for the database {where} "
                f"({detail}{f', {free:.0f} MB free' if free is not None else ''}); free some space or pass --db "
                "with another path"
            )
        return StoreError(f"database error on {where} ({detail}); pass --db with another database")
    # libpq prefixes the server's answer with where it tried: keep the answer.
    if "FATAL:" in detail:
        detail = " ".join(detail.split("FATAL:", 1)[1].split())
    if "invalid connection option" in text or "invalid dsn" in text or 'missing "="' in text:
        return StoreError(f"the database URL {where} is not valid for the driver ({detail}); fix --db")
    state = _sqlstate(exc) or ""
    if state == "42501":
        return StoreError(
            f"the database user of {where} may not create or write the tuner's tables ({detail}); "
            "grant it the rights (e.g. GRANT CREATE ON SCHEMA public) or pass --db with another database"
        )
    if state == "25006":
        return StoreError(f"the database server {where} is read-only ({detail}); pass --db with the primary server")
    if state.startswith("53"):
        return StoreError(f"the database server {where} is out of a resource ({detail}); free it or ask its admin")
    if "password authentication failed" in text or "no password supplied" in text:
        return StoreError(f"the database server {where} refused the login ({detail}); fix the user or password in --db")
    if "does not exist" in text and "database" in text:
        return StoreError(f"{detail} on the server {where}; create it (createdb NAME) or fix the name in --db")
    if isinstance(exc, OperationalError) and any(s in text for s in _UNREACHABLE):
        return StoreError(
            f"cannot reach the database server {where} ({detail}); check that it is running and that --db is right"
        )
    return StoreError(f"database error on {where} ({detail}); check the server and the URL (--db)")


# How drivers word "the server is not there".
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "connection failed",
    "connection to server",
    "timeout expired",
    "timed out",
    "name or service not known",
    "could not translate host",
    "no route to host",
    "server closed the connection",
    "network is unreachable",
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
)
