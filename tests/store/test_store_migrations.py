"""Alembic: fresh databases reach head, re-opening changes nothing, newer schemas are
refused, a failed migration leaves nothing, an old schema is upgraded with its rows,
and the models match the migrations. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, func, insert, inspect, select, text
from store_helpers import execute, is_postgres, raw_engine

from tuner.errors import StoreError
from tuner.paths import migrations_dir
from tuner.store import NewTrial, Store, _engine, _migrate
from tuner.store._schema import SCHEMA_HEAD, VERSION_TABLE, Base

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
TABLES = {"tuner_machines", "tuner_models", "tuner_studies", "tuner_trials", "tuner_best", "tuner_replays",
          "tuner_nightly_runs", "tuner_claims"}


def _version(url: str) -> list[str]:
    engine = raw_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = raw_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _dump(url: str) -> list[Any]:
    """Every table's columns, indexes, constraints and row count, and the version: what a no-op keeps."""
    engine = raw_engine(url)
    try:
        found = inspect(engine)
        dump: list[Any] = []
        with engine.connect() as conn:
            for table in sorted(found.get_table_names()):
                dump.append((
                    table,
                    [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                    sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in found.get_indexes(table)),
                    sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
                    sorted((f["name"], f["referred_table"]) for f in found.get_foreign_keys(table)),
                    conn.execute(text(f"SELECT count(*) FROM {table}")).scalar(),
                ))
            dump.append(list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()))
        return dump
    finally:
        engine.dispose()


def _alembic(url: str, *args: str) -> None:
    """The developer's command line: `alembic -c db/alembic.ini -x url=URL ...`."""
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url={url}", *args],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr


def test_schema_head_constant_is_the_scripts_head() -> None:
    script = _migrate.script_directory()
    assert script.get_heads() == [SCHEMA_HEAD], "update SCHEMA_HEAD in tuner/store/_schema.py"
    assert Path(script.dir) == migrations_dir()


def test_fresh_database_migrates_to_head(db_url: str) -> None:
    Store.open(db_url).close()
    assert _version(db_url) == [SCHEMA_HEAD]
    tables = _tables(db_url)
    assert tables == TABLES | {VERSION_TABLE}
    assert "alembic_version" not in tables  # that name is Optuna's


def test_reopening_is_a_no_op(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.upsert_machine({"k": 1}, "fp", "hw", "sw", "host")
    before = _dump(db_url)
    for _ in range(2):
        with Store.open(db_url) as store:
            assert [m.info for m in store.machines()] == [{"k": 1}]
    assert _dump(db_url) == before
    assert _version(db_url) == [SCHEMA_HEAD]


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_url: str) -> None:
    """SQLite: the migration holds the write lock. PostgreSQL: an advisory lock (a
    fleet's machines starting together); without it, all but one failed here."""
    code = (
        "import sys, time\n"
        "import alembic.command, sqlalchemy\n"
        "from tuner.store import Store\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # start together, imports done\n"
        f"Store.open({db_url!r}).close()\n"
    )
    start = str(time.time() + 2.5)
    openers = [subprocess.Popen([sys.executable, "-c", code, start], cwd=REPO, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    errors = [opener.communicate(timeout=120)[1] for opener in openers]
    assert [opener.returncode for opener in openers] == [0, 0, 0], errors
    assert _version(db_url) == [SCHEMA_HEAD]


def test_models_match_the_migrations(store: Store) -> None:
    """`alembic check` through db/env.py: autogenerate finds nothing to add or drop."""
    from alembic import command

    with store._engine.connect() as conn:
        command.check(_migrate.alembic_config(conn))


def test_database_from_a_newer_tuner_is_refused(db_url: str) -> None:
    Store.open(db_url).close()
    execute(db_url, f"UPDATE {VERSION_TABLE} SET version_num = '0042_from_the_future'")
    before = _dump(db_url)
    with pytest.raises(StoreError, match="'0042_from_the_future'.*upgrade tuner") as caught:
        Store.open(db_url)
    assert SCHEMA_HEAD in str(caught.value)
    assert _dump(db_url) == before  # nothing touched


def test_a_failed_migration_leaves_the_database_as_it_was(db_url: str) -> None:
    # A table in the way makes 0001 fail half-way, after it created three tables.
    execute(db_url, "CREATE TABLE tuner_trials (x INTEGER)")
    with pytest.raises(StoreError, match="already exists"):
        Store.open(db_url)
    assert _tables(db_url) == {"tuner_trials"}  # transactional DDL: no tuner_machines, no version stamp


def test_developer_alembic_ini_upgrades_checks_and_downgrades(db_url: str) -> None:
    _alembic(db_url, "upgrade", "head")
    assert _version(db_url) == [SCHEMA_HEAD]
    _alembic(db_url, "check")
    _alembic(db_url, "downgrade", "base")
    assert _tables(db_url) == {VERSION_TABLE}
    # And the tuner migrates it back up by itself.
    Store.open(db_url).close()
    assert _tables(db_url) == TABLES | {VERSION_TABLE}


def test_every_table_is_prefixed() -> None:
    assert set(Base.metadata.tables) == TABLES


# -- a database written by the 0001 tuner -------------------------------------------------


def _database_at_0001(db_url: str) -> str:
    """``db_url`` holding what schema-0001.db holds, at revision 0001.

    schema-0001.db was written by the tuner at revision 0001 (one machine, model,
    study and best, three trials). SQLite: a copy of the file (Store.open upgrades
    in place: never the checked-in file). PostgreSQL: Alembic to 0001 only, then
    the file's rows inserted as they are.
    """
    if not is_postgres(db_url):
        shutil.copy(DATA / "schema-0001.db", _engine.sqlite_file(_engine.resolve_url(db_url)))  # type: ignore[arg-type]
        return db_url
    from alembic import command

    target = _engine.make_engine(_engine.resolve_url(db_url))
    source = create_engine(f"sqlite:///{DATA / 'schema-0001.db'}")
    try:
        with target.begin() as conn:
            command.upgrade(_migrate.alembic_config(conn), "0001")
        old, new = MetaData(), MetaData()
        old.reflect(source)
        new.reflect(target)
        with source.connect() as src, target.begin() as dst:
            for table in old.sorted_tables:  # parents before the rows that point at them
                if table.name == VERSION_TABLE:
                    continue
                rows = [dict(row) for row in src.execute(select(table)).mappings()]
                if rows:
                    dst.execute(insert(new.tables[table.name]), rows)
                    # The ids were given: move the sequence past them, as inserts by the tuner would have.
                    dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"(SELECT max(id) FROM {table.name}))"))
            counts = {t: dst.execute(select(func.count()).select_from(new.tables[t])).scalar() for t in new.tables}
        assert counts["tuner_trials"] == 3 and counts["tuner_best"] == 1
    finally:
        target.dispose()
        source.dispose()
    return db_url


def test_a_0001_database_is_upgraded_and_keeps_its_rows(db_url: str) -> None:
    url = _database_at_0001(db_url)
    assert _version(url) == ["0001"]
    with Store.open(url) as store:
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
        # And the new columns and table take data, and new rows get new ids.
        store.record_replay(study.id, kind="verify", role="candidate", round=0, config={"backend": "onnxruntime"},
                            status="ok", trial_id=trials[1].id, median_ms=1.1)
        assert [r.median_ms for r in store.replays(study.id)] == [1.1]
        assert store.record_trial(NewTrial(study.id, 3, config={}, status="ok")) > trials[-1].id
    assert _version(url) == [SCHEMA_HEAD]


def test_downgrading_0002_keeps_the_rows_0001_knew(db_url: str) -> None:
    """0002's downgrade drops columns natively: a table copy would cascade-delete tuner_best."""
    url = _database_at_0001(db_url)
    Store.open(url).close()
    _alembic(url, "downgrade", "0001")
    assert _version(url) == ["0001"]
    engine = raw_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tuner_trials")).scalar() == 3
            assert conn.execute(text("SELECT count(*) FROM tuner_best")).scalar() == 1
        columns = {c["name"] for c in inspect(engine).get_columns("tuner_trials")}
    finally:
        engine.dispose()
    assert "flags" not in columns and "samples_ms" in columns
