"""Just enough of libpq for `tuner best`'s lean read path (_reader.py): connect, run a
SELECT with parameters, read text results. Importing psycopg costs 130-250 ms on a
small VM (its package loads every module it has, asyncio included), more than the
rest of `tuner best` together; this module loads the libpq psycopg's binary package
ships (psycopg_binary.libs/libpq-*.so, the same library psycopg drives) with ctypes.

It is a fast path, never the only one: ``connect`` returns None where it cannot be
used (no psycopg-binary, no such library, the connection refused or not answering
within ``FIRST_TRY_S``), and the reader then connects through psycopg, whose answer,
a connection or the error the store words, is the canonical one. Results are
decoded as psycopg decodes them for the types the reader selects (integers, floats,
text, booleans, json, timestamps); any other type is refused (``Error``).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

# Seconds the fast path waits for a server before leaving it to psycopg (which waits
# the URL's connect timeout): an unreachable server costs this much more, not double.
FIRST_TRY_S = 2

_CONNECTION_OK = 0
_PGRES_COMMAND_OK, _PGRES_TUPLES_OK = 1, 2
_PG_DIAG_SQLSTATE = ord("C")
_PG_DIAG_MESSAGE_PRIMARY = ord("M")


class Error(Exception):
    """A DB-API-style error (SQLAlchemy's wrapping reads the class names and ``sqlstate``)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class DataError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# A server error's class by its SQLSTATE's class (first two characters), as psycopg
# classes PostgreSQL's (tests/store checks this against psycopg.errors).
SQLSTATE_CLASSES: dict[str, type[DatabaseError]] = {
    **dict.fromkeys(("08", "27", "28", "2F", "38", "39", "3B", "40", "53", "54", "55", "57", "58"), OperationalError),
    **dict.fromkeys(("F0", "HV"), OperationalError),
    **dict.fromkeys(("10", "20", "21", "26", "34", "3D", "3F", "42", "44", "P0"), ProgrammingError),
    **dict.fromkeys(("24", "25", "2B", "2D", "XX"), InternalError),
    "0A": NotSupportedError,
    "22": DataError,
    "23": IntegrityError,
}


def error_class(sqlstate: str | None) -> type[DatabaseError]:
    """psycopg's class of a server error with this SQLSTATE (no SQLSTATE: the connection's)."""
    if sqlstate is None:
        return OperationalError
    return SQLSTATE_CLASSES.get(sqlstate[:2], DatabaseError)


def _int(text: str) -> int:
    return int(text)


def _bool(text: str) -> bool:
    return text == "t"


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


# PostgreSQL type oid -> how psycopg's text loaders read it.
_DECODERS: dict[int, Any] = {
    16: _bool,
    20: _int,
    21: _int,
    23: _int,
    26: _int,
    700: float,
    701: float,
    25: str,
    1043: str,
    1042: str,
    19: str,
    114: json.loads,
    3802: json.loads,
    1114: _timestamp,
}


def library() -> Path | None:
    """The libpq of the installed psycopg-binary, or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("psycopg_binary")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))).parent / "psycopg_binary.libs"
    found = sorted(folder.glob("libpq-*.so*"))
    return found[0] if len(found) == 1 else None


_LIB: Any = None


def _load(path: Path) -> Any:
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(str(path))
        p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, restype, argtypes in [
            ("PQconnectdbParams", p, [ctypes.POINTER(s), ctypes.POINTER(s), i]),
            ("PQstatus", i, [p]),
            ("PQfinish", None, [p]),
            ("PQerrorMessage", s, [p]),
            ("PQexecParams", p, [p, s, i, p, ctypes.POINTER(s), p, p, i]),
            ("PQresultStatus", i, [p]),
            ("PQresultErrorField", s, [p, i]),
            ("PQresultErrorMessage", s, [p]),
            ("PQntuples", i, [p]),
            ("PQnfields", i, [p]),
            ("PQftype", ctypes.c_uint, [p, i]),
            ("PQgetvalue", s, [p, i, i]),
            ("PQgetisnull", i, [p, i, i]),
            ("PQclear", None, [p]),
        ]:
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        _LIB = lib
    return _LIB


def connect(arguments: dict[str, Any]) -> Connection | None:
    """A connection with psycopg's connect arguments (libpq keywords), or None: this
    path cannot be used here, or the server did not let it in (psycopg then says why)."""
    path = library()
    if path is None:
        return None
    try:
        lib = _load(path)
    except (OSError, AttributeError):
        return None
    settings = {key: str(value) for key, value in arguments.items()}
    try:
        timeout = int(settings.get("connect_timeout") or FIRST_TRY_S)
    except ValueError:
        return None  # psycopg says what is wrong with it
    settings["connect_timeout"] = str(min(timeout, FIRST_TRY_S) if timeout > 0 else FIRST_TRY_S)
    settings["client_encoding"] = "UTF8"
    keys = (ctypes.c_char_p * (len(settings) + 1))(*[k.encode() for k in settings], None)
    values = (ctypes.c_char_p * (len(settings) + 1))(*[v.encode() for v in settings.values()], None)
    handle = lib.PQconnectdbParams(keys, values, 0)
    if not handle:
        return None
    if lib.PQstatus(handle) != _CONNECTION_OK:
        lib.PQfinish(handle)
        return None
    return Connection(lib, handle)


class Connection:
    """A libpq connection: ``cursor().execute(sql, params)`` with ``%s`` placeholders,
    ``fetchall()``; ``rollback()``; ``close()``. Transactions as psycopg's (not
    autocommit): the first statement begins one, ``rollback`` ends it."""

    def __init__(self, lib: Any, handle: int) -> None:
        self._lib = lib
        self._handle: int | None = handle
        self._in_transaction = False

    def cursor(self) -> Cursor:
        return Cursor(self)

    def rollback(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self.run("ROLLBACK", ())

    def close(self) -> None:
        if self._handle is not None:
            self._lib.PQfinish(self._handle)
            self._handle = None

    def run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._handle is None:
            raise OperationalError("the connection is closed")
        if not self._in_transaction and sql != "ROLLBACK":
            self._in_transaction = True
            self.run("BEGIN", ())
        lib = self._lib
        parts = sql.split("%s")
        text = "".join(part + (f"${n + 1}" if n < len(parts) - 1 else "") for n, part in enumerate(parts))
        values = (ctypes.c_char_p * max(1, len(params)))(
            *[None if v is None else str(int(v) if isinstance(v, bool) else v).encode() for v in params]
        )
        result = lib.PQexecParams(self._handle, text.encode(), len(params), None, values, None, None, 0)
        if not result:
            raise OperationalError(_text(lib.PQerrorMessage(self._handle)).strip() or "no result from the server")
        try:
            status = lib.PQresultStatus(result)
            if status not in (_PGRES_COMMAND_OK, _PGRES_TUPLES_OK):
                sqlstate = _text(lib.PQresultErrorField(result, _PG_DIAG_SQLSTATE)) or None
                message = _text(lib.PQresultErrorField(result, _PG_DIAG_MESSAGE_PRIMARY))
                message = message or _text(lib.PQresultErrorMessage(result)).strip()
                raise error_class(sqlstate)(message, sqlstate)
            columns = lib.PQnfields(result)
            decoders = []
            for column in range(columns):
                oid = lib.PQftype(result, column)
                if oid not in _DECODERS:
                    raise DatabaseError(f"column {column} has type oid {oid}, which this reader does not decode")
                decoders.append(_DECODERS[oid])
            # A NULL reads as an empty value: only those are asked whether they are NULL
            # (a fleet's peers query reads thousands of values, a foreign call each).
            value, is_null = lib.PQgetvalue, lib.PQgetisnull
            rows = []
            for row in range(lib.PQntuples(result)):
                cells = []
                for column in range(columns):
                    raw = value(result, row, column)
                    cells.append(
                        None if not raw and is_null(result, row, column) else decoders[column](raw.decode("utf-8"))
                    )
                rows.append(tuple(cells))
            return rows
        finally:
            lib.PQclear(result)


class Cursor:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._rows = self._connection.run(sql, params)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        self._rows = []


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""
