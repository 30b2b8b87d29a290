"""Alembic: fresh databases reach head, re-opening changes nothing, newer schemas are
refused, a failed migration leaves nothing, and the models match the migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tuner.errors import StoreError
from tuner.paths import migrations_dir
from tuner.store import Store, _migrate
from tuner.store._schema import SCHEMA_HEAD, VERSION_TABLE, Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {"tuner_machines", "tuner_models", "tuner_studies", "tuner_trials", "tuner_best", "tuner_replays"}


def _version(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        return [row[0] for row in raw.execute(f"SELECT version_num FROM {VERSION_TABLE}")]


def _dump(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as raw:
        return raw.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_schema_head_constant_is_the_scripts_head() -> None:
    script = _migrate.script_directory()
    assert script.get_heads() == [SCHEMA_HEAD], "update SCHEMA_HEAD in tuner/store/_schema.py"
    assert Path(script.dir) == migrations_dir()


def test_fresh_database_migrates_to_head(db_path: Path) -> None:
    Store.open(f"sqlite:///{db_path}").close()
    assert _version(db_path) == [SCHEMA_HEAD]
    tables = set(inspect(create_engine(f"sqlite:///{db_path}")).get_table_names())
    assert tables == TABLES | {VERSION_TABLE}
    assert "alembic_version" not in tables  # that name is Optuna's


def test_reopening_is_a_no_op(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}") as store:
        store.upsert_machine({"k": 1}, "fp", "hw", "sw", "host")
    before = _dump(db_path)
    for _ in range(2):
        with Store.open(f"sqlite:///{db_path}") as store:
            assert [m.info for m in store.machines()] == [{"k": 1}]
    assert _dump(db_path) == before
    assert _version(db_path) == [SCHEMA_HEAD]


def test_models_match_the_migrations(store: Store) -> None:
    """`alembic check` through db/env.py: autogenerate finds nothing to add or drop."""
    from alembic import command

    with store._engine.connect() as conn:
        command.check(_migrate.alembic_config(conn))


def test_database_from_a_newer_tuner_is_refused(db_path: Path) -> None:
    Store.open(f"sqlite:///{db_path}").close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0042_from_the_future'")
    before = _dump(db_path)
    with pytest.raises(StoreError, match="'0042_from_the_future'.*upgrade tuner") as caught:
        Store.open(f"sqlite:///{db_path}")
    assert SCHEMA_HEAD in str(caught.value)
    assert _dump(db_path) == before  # nothing touched


def test_a_failed_migration_leaves_the_database_as_it_was(db_path: Path) -> None:
    # A table in the way makes 0001 fail half-way, after it created three tables.
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE tuner_trials (x INTEGER)")
    with pytest.raises(StoreError, match="already exists"):
        Store.open(f"sqlite:///{db_path}")
    with sqlite3.connect(db_path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"tuner_trials"}  # transactional DDL: no tuner_machines, no version stamp


def test_developer_alembic_ini_upgrades_checks_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"

    def alembic(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url={url}", *args],
            check=True, cwd=REPO, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    alembic("upgrade", "head")
    assert _version(tmp_path / "dev.db") == [SCHEMA_HEAD]
    alembic("check")
    alembic("downgrade", "base")
    tables = set(inspect(create_engine(url)).get_table_names())
    assert tables == {VERSION_TABLE}
    # And the tuner migrates it back up by itself.
    Store.open(url).close()
    assert set(inspect(create_engine(url)).get_table_names()) == TABLES | {VERSION_TABLE}


def test_every_table_is_prefixed() -> None:
    assert set(Base.metadata.tables) == TABLES


DATA = Path(__file__).resolve().parent / "data"


def test_a_0001_database_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    """schema-0001.db was written by the tuner at revision 0001 (three trials, one best)."""
    import shutil

    db = tmp_path / "old.db"
    shutil.copy(DATA / "schema-0001.db", db)  # Store.open upgrades in place: never the checked-in file
    assert _version(db) == ["0001"]
    with Store.open(f"sqlite:///{db}") as store:
        (study,) = store.studies()
        trials = store.trials(study.id)
        assert [(t.number, t.status) for t in trials] == [(0, "ok"), (1, "ok"), (2, "crashed")]
        assert trials[1].samples_ms == [1.05, 1.1, 1.1, 1.2] and trials[0].accuracy == {"cosine_mean": 1.0, "cosine_min": 1.0}
        # What 0001 did not measure reads as unknown, not as a value.
        assert (trials[0].flags, trials[0].noise, trials[0].peak_rss_mb, trials[0].throughput) == (None,) * 4
        assert study.pareto is None
        (best,) = store.best("fp-0001", "minilm")
        assert (best.trial_id, best.speedup, best.default_median_ms) == (trials[1].id, 4.9, 5.4)
        assert (best.speedup_low, best.speedup_high, best.significant, best.finalists) == (None, None, None, None)
        # And the new columns and table take data.
        store.record_replay(study.id, kind="verify", role="candidate", round=0, config={"backend": "onnxruntime"},
                            status="ok", trial_id=trials[1].id, median_ms=1.1)
        assert [r.median_ms for r in store.replays(study.id)] == [1.1]
    assert _version(db) == [SCHEMA_HEAD]


def test_downgrading_0002_keeps_the_rows_0001_knew(tmp_path: Path) -> None:
    """0002's downgrade drops columns natively: a table copy would cascade-delete tuner_best."""
    import shutil

    db = tmp_path / "old.db"
    shutil.copy(DATA / "schema-0001.db", db)
    Store.open(f"sqlite:///{db}").close()
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url=sqlite:///{db}", "downgrade", "0001"],
        check=True, cwd=REPO, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert _version(db) == ["0001"]
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM tuner_trials").fetchone() == (3,)
        assert raw.execute("SELECT count(*) FROM tuner_best").fetchone() == (1,)
        columns = {row[1] for row in raw.execute("PRAGMA table_info(tuner_trials)")}
    assert "flags" not in columns and "samples_ms" in columns
