"""A real PostgreSQL server for the tests (a pytest plugin; tests/conftest.py loads it).

The server is the one ``TUNER_TEST_POSTGRES_URL`` names: ``make test`` starts a
throwaway one on loopback (scripts/with-postgres.sh) and exports its URL. Its user
must be allowed to create databases: every test gets a database of its own, created
for it and dropped after, so no test sees another's rows.

Without that variable the PostgreSQL tests are skipped, with the command that starts
a server; under ``CI=true`` a skipped PostgreSQL test fails the run.
(pytest puts tests/ on sys.path: it holds the root conftest.py and no __init__.py.)
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

URL_VARIABLE = "TUNER_TEST_POSTGRES_URL"
START_COMMAND = "`scripts/with-postgres.sh .venv/bin/pytest tests/store` (`make test` does)"
# Every skip this module causes starts with this, so the CI check can count them.
SKIP_PREFIX = "no PostgreSQL server"


class PostgresServer:
    """The test server: makes and drops one database per test."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        # CREATE/DROP DATABASE cannot run inside a transaction.
        self._admin = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=_null_pool())

    def check(self) -> None:
        """Connect once, so a server that is down fails here with its reason."""
        from sqlalchemy import text

        with self._admin.connect() as connection:
            connection.execute(text("SELECT 1"))

    def create_database(self) -> str:
        """A new empty database; its URL (the server's credentials, the psycopg driver)."""
        from sqlalchemy import text

        name = f"tuner_test_{secrets.token_hex(6)}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        """Drop it, closing what a test left connected (a killed process's session)."""
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def dispose(self) -> None:
        self._admin.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if not os.environ.get(URL_VARIABLE):
        return f"{SKIP_PREFIX}: {URL_VARIABLE} is not set; run the tests under one with {START_COMMAND}"
    if importlib.util.find_spec("psycopg") is None:
        return f"{SKIP_PREFIX} driver: pip install 'psycopg[binary]' (the test extra has it)"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The server of ``TUNER_TEST_POSTGRES_URL`` (skips the test without one)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer(os.environ[URL_VARIABLE])
    server.check()
    yield server
    server.dispose()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database on the test server, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


# -- CI: the PostgreSQL half must run ------------------------------------------------

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple) and SKIP_PREFIX in str(report.longrepr[2]):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _skipped and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        terminalreporter.write_line(
            f"CI: {len(_skipped)} PostgreSQL test(s) skipped ({_skipped[0]}, ...); CI must run them: "
            f"`make test` starts a server (scripts/with-postgres.sh)", red=True, bold=True,
        )
