"""Who may read the dashboard: loopback by default, a token anywhere else; and a
database that is missing, foreign or at another schema is refused in one line."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_tuner
from serve_helpers import make_client

TOKEN = "s3cret-token-for-the-tests-0123456789"


def test_a_public_host_without_a_token_exits_2_with_one_line(real_db: Path) -> None:
    proc = run_tuner("serve", "--host", "0.0.0.0", "--db", str(real_db), env=dict(os.environ), check=False,
                     timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--token-file" in lines[0] and "0.0.0.0" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_a_short_or_missing_token_file_is_refused(tmp_path: Path, real_db: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    for path in (short, tmp_path / "missing"):
        proc = run_tuner("serve", "--token-file", str(path), "--db", str(real_db), env=dict(os.environ),
                         check=False, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    proc = run_tuner("serve", "--db", str(tmp_path / "none.db"), env=dict(os.environ), check=False, timeout=60)
    assert proc.returncode == 2 and "no tuner database" in proc.stderr and not (tmp_path / "none.db").exists()


def test_foreign_and_old_databases_are_refused(tmp_path: Path, real_db: Path) -> None:
    from tuner.errors import StoreError
    from tuner.service.db import open_readonly

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="no tuner tables"):
        open_readonly(str(foreign))
    old = tmp_path / "old.db"
    old.write_bytes(real_db.read_bytes())
    with sqlite3.connect(old) as connection:
        connection.execute("UPDATE tuner_alembic_version SET version_num = '0001'")
    with pytest.raises(StoreError, match="schema revision 0001"):
        open_readonly(str(old))
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("hello")
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_readonly(str(not_a_db))


@pytest.fixture(scope="module")
def guarded(real_db: Path) -> Any:
    return make_client(real_db, token=TOKEN)


@pytest.mark.parametrize("path", ["/", "/api/v1/overview", "/static/dashboard.js", "/openapi.json"])
def test_without_the_token_401(guarded: Any, path: str) -> None:
    guarded.cookies.clear()
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" in response.json()["error"]
    assert "content-security-policy" in response.headers


def test_a_wrong_token_401(guarded: Any) -> None:
    guarded.cookies.clear()
    assert guarded.get("/api/v1/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/api/v1/info", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert guarded.get("/api/v1/info", params={"token": TOKEN[:-1]}, follow_redirects=False).status_code == 401
    guarded.cookies.set("tuner_token", "wrong")
    assert guarded.get("/api/v1/info").status_code == 401
    guarded.cookies.clear()


def test_the_bearer_header(guarded: Any) -> None:
    guarded.cookies.clear()
    response = guarded.get("/api/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["read_only"] is True


def test_the_token_in_the_url_sets_a_cookie_once(guarded: Any) -> None:
    guarded.cookies.clear()
    response = guarded.get("/studies/1", params={"token": TOKEN, "x": "1"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/studies/1?x=1", "the token leaves the address bar"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The client keeps the cookie: later requests need nothing else.
    assert guarded.get("/studies/1").status_code == 200
    assert guarded.get("/api/v1/studies").status_code == 200
    guarded.cookies.clear()
    assert guarded.get("/api/v1/studies").status_code == 401


def test_a_token_allows_any_host_header(guarded: Any) -> None:
    guarded.cookies.clear()
    response = guarded.get("/api/v1/info", headers={"Authorization": f"Bearer {TOKEN}", "Host": "dash.example:80"})
    assert response.status_code == 200


def test_tuner_serve_with_a_token_on_a_real_socket(tmp_path: Path, real_db: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "serve", "--db", str(real_db), "--port", "0", "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url = f"http://127.0.0.1:{match.group(1)}/api/v1/info"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert b'"read_only":true' in response.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_token_comparison() -> None:
    from tuner.service.security import is_loopback, token_matches

    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN + "x", TOKEN)
    assert not token_matches("", TOKEN) and not token_matches(None, TOKEN)
    assert token_matches("ünïcode-token", "ünïcode-token")
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com"))


def test_loopback_host_names(synthetic: Any) -> None:
    for host in ("localhost:8765", "127.0.0.1", "127.0.0.2:9", "[::1]:8765"):
        assert synthetic.get("/api/v1/info", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "10.0.0.1:8765", "", "localhost.evil.example"):
        assert synthetic.get("/api/v1/info", headers={"Host": host}).status_code == 403, host
