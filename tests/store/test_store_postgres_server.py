"""The test server's own rules (tests/postgres_helpers.py): without a server the
PostgreSQL tests are skipped with the command that starts one, and under CI=true
that skip fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from postgres_helpers import URL_VARIABLE

TESTS = Path(__file__).resolve().parents[1]


def _pytest(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (folder / "test_needs_postgres.py").write_text("def test_it(postgres_server):\n    pass\n")
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    environ = {k: v for k, v in os.environ.items() if k not in (URL_VARIABLE, "CI")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "postgres_helpers", "-p", "no:cacheprovider", "-c",
         str(folder / "pytest.ini"), str(folder)],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={**environ, "PYTHONPATH": str(TESTS), **env},
    )


def test_without_a_server_the_postgresql_tests_are_skipped_with_the_command(tmp_path: Path) -> None:
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout and "scripts/with-postgres.sh" in run.stdout


def test_under_ci_a_skipped_postgresql_test_fails_the_run(tmp_path: Path) -> None:
    run = _pytest(tmp_path, CI="true")
    assert run.returncode == 1, run.stdout
    assert "1 skipped" in run.stdout and "CI: 1 PostgreSQL test(s) skipped" in run.stdout
