"""Opening a store: URLs, folders, SQLite settings, and every way opening can fail."""

from __future__ import annotations

import importlib.util
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tuner.errors import StoreError, UserError
from tuner.store import Store, _engine


def test_fresh_database_gets_folder_wal_foreign_keys_and_busy_timeout(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with Store.open(f"sqlite:///{db_path}") as store:
        assert db_path.is_file()
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(_engine.BUSY_TIMEOUT_S * 1000)
    # WAL is a property of the file: any other connection (Optuna's) sees it too.
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_url_is_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNER_DATA_DIR", str(tmp_path / "xdg" / "tuner"))
    with Store.open() as store:
        assert store.url == f"sqlite:///{tmp_path / 'xdg' / 'tuner' / 'tuner.db'}"
    assert (tmp_path / "xdg" / "tuner" / "tuner.db").is_file()


def test_bare_relative_path_becomes_an_absolute_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store.open("sub/my.db") as store:
        store.upsert_machine({}, "fp", "hw", "sw", "host")
        url = store.url
    assert url == f"sqlite:///{tmp_path / 'sub' / 'my.db'}"
    # Reusable from anywhere: another engine on the same URL sees the row.
    monkeypatch.chdir("/")
    with Store.open(url) as again:
        assert [m.fingerprint for m in again.machines()] == ["fp"]


def test_in_memory_store_works_across_threads() -> None:
    with Store.open(":memory:") as store:
        machine_id = store.upsert_machine({}, "fp", "hw", "sw", "host")
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.extend(m.id for m in store.machines()))
        thread.start()
        thread.join()
        assert seen == [machine_id]


def test_import_is_cheap_and_reopening_an_up_to_date_database_skips_alembic(db_url: str) -> None:
    Store.open(db_url).close()
    code = (
        "import sys\n"
        "import tuner.store\n"
        "assert not any(m.startswith(('sqlalchemy', 'alembic')) for m in sys.modules), 'import pulled SQLAlchemy'\n"
        f"tuner.store.Store.open({db_url!r}).close()\n"
        "assert 'alembic' not in sys.modules, 'alembic imported for an up-to-date database'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# -- failures a user can cause: one StoreError line each --------------------------------


def _open_error(url: str) -> str:
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "\n" not in message
    assert isinstance(caught.value, UserError)
    return message


def test_folder_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    message = _open_error(f"sqlite:///{blocker / 'sub' / 'tuner.db'}")
    assert str(blocker / "sub") in message and "--db" in message


def test_folder_that_cannot_be_created_is_refused() -> None:
    message = _open_error("sqlite:////proc/nonexistent/tuner.db")
    assert "/proc/nonexistent" in message and "--db" in message


def test_file_that_cannot_be_created_is_refused() -> None:
    # /proc exists, but no file can be created in it, even by root.
    message = _open_error("sqlite:////proc/tuner.db")
    assert "/proc/tuner.db" in message and "--db" in message


def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    assert str(tmp_path) in _open_error(str(tmp_path))


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    message = _open_error(f"sqlite:///{path}")
    assert "not a SQLite database" in message and str(path) in message
    assert path.read_text().startswith("these are my notes")  # left as it was


def test_unsupported_and_malformed_urls_are_refused() -> None:
    assert "SQLite and PostgreSQL only" in _open_error("mysql://user@localhost/tuner")
    assert "not a database URL" in _open_error("://nowhere")


@pytest.mark.skipif(importlib.util.find_spec("pg8000") is not None, reason="pg8000 is installed here")
def test_missing_driver_says_what_to_install() -> None:
    assert "pip install pg8000" in _open_error("postgresql+pg8000://user@127.0.0.1/tuner")


def _closed_port() -> int:
    """A loopback port nobody listens on: a connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="needs the psycopg driver")
def test_unreachable_postgresql_server_is_one_line_without_the_password() -> None:
    port = _closed_port()
    started = time.monotonic()
    message = _open_error(f"postgresql://tuner:s3cret@127.0.0.1:{port}/tuner")
    assert time.monotonic() - started < 10
    assert message.startswith("cannot reach the database server")
    assert "s3cret" not in message and f":{port}" in message


# -- PostgreSQL URLs -------------------------------------------------------------------


def test_postgresql_urls_get_psycopg_and_a_connect_timeout() -> None:
    url = _engine.resolve_url("postgresql://tuner:pw@db.example:5433/tuner")
    assert url.drivername == "postgresql+psycopg"  # the driver the tuner installs, not psycopg2
    assert url.query["connect_timeout"] == str(_engine.CONNECT_TIMEOUT_S)
    assert url.render_as_string(hide_password=False).startswith("postgresql+psycopg://tuner:pw@db.example:5433/tuner?")
    # What the user chose stays.
    assert _engine.resolve_url("postgresql+psycopg://h/db?connect_timeout=2").query["connect_timeout"] == "2"
    assert "connect_timeout" not in _engine.resolve_url("postgresql+pg8000://h/db").query  # not a libpq option there


def test_messages_never_show_a_password() -> None:
    shown = _engine.describe(_engine.resolve_url("postgresql://tuner:s3cret@h/db?password=t0p&sslmode=require"))
    assert "s3cret" not in shown and "t0p" not in shown
    assert shown.startswith("postgresql+psycopg://tuner:***@h/db?") and "sslmode=require" in shown
    assert "s3cret" not in _open_error("postgresql://tuner:s3cret@h /db:x:y")  # not even in a malformed URL
    assert "s3cret" not in _open_error("mysql://tuner:s3cret@localhost/tuner")


def test_a_postgresql_store_keeps_its_password_for_optuna_and_hides_it_in_messages(postgres_url: str) -> None:
    password = make_url(postgres_url).password
    assert password
    with Store.open(postgres_url) as store:
        assert make_url(store.url).password == password  # Optuna's RDBStorage opens store.url
        assert password not in repr(store)
        store.upsert_machine({}, "fp", "hw", "sw", "host")
    with Store.open(postgres_url) as again:  # a second process's view
        assert [m.fingerprint for m in again.machines()] == ["fp"]


def test_a_wrong_password_or_database_on_a_live_server_is_one_line(postgres_url: str) -> None:
    url = make_url(postgres_url)
    message = _open_error(url.set(password="not-the-password").render_as_string(hide_password=False))
    assert "refused the login" in message and "not-the-password" not in message
    message = _open_error(url.set(database="no_such_database").render_as_string(hide_password=False))
    assert message.startswith('database "no_such_database" does not exist') and "createdb" in message
    assert url.password not in message
    message = _open_error(postgres_url + "?colour=red")
    assert 'invalid connection option "colour"' in message


def test_a_role_without_rights_on_the_schema_is_one_line(postgres_url: str) -> None:
    """PostgreSQL 15 lets only the owner create tables in `public`: a fleet's role may lack it."""
    from store_helpers import execute

    role = f"reader_{make_url(postgres_url).database}"
    execute(postgres_url, f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        url = make_url(postgres_url).set(username=role, password="reader-pw")
        message = _open_error(url.render_as_string(hide_password=False))
        assert "may not create or write the tuner's tables" in message and "reader-pw" not in message
    finally:
        execute(postgres_url, f"DROP ROLE {role}")


def test_a_locked_database_is_reported(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(f"sqlite:///{db_path}").close()
    monkeypatch.setattr(_engine, "BUSY_TIMEOUT_S", 0.2)  # read when the engine is made
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write in progress
    try:
        with Store.open(f"sqlite:///{db_path}") as store:
            assert store.machines() == []  # WAL: reading does not wait for the writer
            with pytest.raises(StoreError, match="locked by another process"):
                store.upsert_machine({}, "fp", "hw", "sw", "host")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
