"""Telling a database server that went away from every other database error.

A study on a fleet's server outlives the server's restarts: the error that a lost
connection raises, whether it comes through the store (a ``StoreError``), through
Optuna's storage (``StorageInternalError`` with the SQLAlchemy error as its cause) or
straight from SQLAlchemy, is recognised here so the study can wait for the server or
stop with one line (tuner.search._journal). Only what says "the server is not there"
counts: a refused or dropped connection, an administrator's shutdown, a server
starting up; never an integrity or programming error.
"""

from __future__ import annotations

# SQLSTATE classes of a lost server: connection exceptions (08), operator
# intervention: admin shutdown, crash shutdown, cannot connect now (57P).
_LOST_SQLSTATES = ("08", "57P")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database server could not be reached."""
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from tuner.store._engine import _UNREACHABLE, _sqlstate

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, IntegrityError):
            return False
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            state = _sqlstate(current)
            if state is not None and state.startswith(_LOST_SQLSTATES):
                return True
            text = str(getattr(current, "orig", None) or current).lower()
            if any(words in text for words in _UNREACHABLE):
                return True
        current = current.__cause__ or current.__context__
    return False
