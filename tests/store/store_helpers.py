"""Reaching the test database beside the store, the same way on SQLite and PostgreSQL.
(pytest puts this folder on sys.path: the tests import it as ``store_helpers``.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def raw_engine(url: str) -> "Engine":
    """An engine of the test's own, beside the store's: no tuner hooks, no pool."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool)


def execute(url: str, *statements: str) -> None:
    """Run SQL on the database in one transaction (triggers, broken stamps, ...)."""
    from sqlalchemy import text

    engine = raw_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def scalar(url: str, query: str) -> object:
    from sqlalchemy import text

    engine = raw_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(query)).scalar()
    finally:
        engine.dispose()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")
