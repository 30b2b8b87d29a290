"""What opening the database needs without SQLAlchemy: timeouts, SQLite's read-only
connection, and whether a folder can be written. tuner.store._engine builds the
store's engines on these, and the lean read path of `tuner best` (_reader.py) opens
its DB-API connection with the same ones, so the two open a database alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Seconds to wait for a PostgreSQL server to answer a new connection (libpq's
# connect_timeout). Put in the URL itself, so Optuna's engine on Store.url gets it too.
CONNECT_TIMEOUT_S = 5
# How long a SQLite write waits for another process's write before giving up.
BUSY_TIMEOUT_S = 30.0
# libpq's options that make every transaction of a reader's PostgreSQL connection READ ONLY.
READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"


def read_only_connector(file: Path) -> Any:
    """A function that opens a read-only sqlite3 connection to ``file`` (an engine's
    ``creator``; Optuna's read-only storage uses it too)."""

    def connect() -> Any:
        import sqlite3

        connection = sqlite3.connect(read_only_uri(file), uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            connection.close()
            if folder_writable(file):
                raise
            connection = sqlite3.connect(read_only_uri(file, immutable=True), uri=True, check_same_thread=False)
        return connection

    return connect


def read_only_uri(file: Path, immutable: bool = False) -> str:
    """SQLite's URI filename that opens ``file`` read-only (``immutable``: and never
    looks for a journal or shared memory beside it)."""
    from urllib.parse import quote

    return f"file:{quote(str(file))}?mode=ro{'&immutable=1' if immutable else ''}"


def folder_writable(file: Path) -> bool:
    """Whether the file and its folder can be written here (a WAL database needs both)."""
    import os

    folder = file.parent
    try:
        read_only_fs = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_fs = False
    return not read_only_fs and os.access(folder, os.W_OK) and (not file.exists() or os.access(file, os.W_OK))
