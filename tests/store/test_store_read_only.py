"""Store.open(read_only=True) and Store.optuna_storage(), on SQLite and PostgreSQL
(docs/store.md, "Reading only" and "Optuna's tables")."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import execute

from tuner.errors import StoreError
from tuner.store import Store


def test_a_read_only_store_reads_and_refuses_writes(seeded, db_url: str) -> None:
    seeded.store.close()
    with Store.open(db_url, read_only=True) as reader:
        assert reader.read_only
        (study,) = reader.studies()
        assert study.optuna_study_name == "study-seq16"
        with pytest.raises(StoreError, match="read-only"):
            reader.upsert_model("other", "hash-other", "/m", "embedding")


def test_a_missing_sqlite_file_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    where = tmp_path / "nothing" / "tuner.db"
    with Store.open(str(where), read_only=True) as reader:
        assert reader.studies() == [] and reader.best("fp", "model") == []
    assert not where.parent.exists()


def test_a_newer_tuner_schema_is_refused_read_only_too(seeded, db_url: str) -> None:
    seeded.store.close()
    execute(db_url, "UPDATE tuner_alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="'9999'.*newer"):
        Store.open(db_url, read_only=True)


def test_optunas_schema_is_checked_before_use(store: Store, db_url: str) -> None:
    storage = store.optuna_storage()
    assert storage.get_current_version() == storage.get_head_version()
    older = next(v for v in storage.get_all_versions() if v != storage.get_head_version())
    storage.engine.dispose()
    execute(db_url, "UPDATE alembic_version SET version_num = 'v99.z'")
    with pytest.raises(StoreError, match="'v99.z'.*does not know.*pip install -U optuna"):
        store.optuna_storage()
    execute(db_url, f"UPDATE alembic_version SET version_num = '{older}'")
    with pytest.raises(StoreError, match="optuna storage upgrade"):
        store.optuna_storage()


def test_optunas_tables_read_only(seeded, db_url: str) -> None:
    import optuna

    optuna.create_study(storage=seeded.store.optuna_storage(), study_name="study-seq16")
    seeded.store.close()
    with Store.open(db_url, read_only=True) as reader:
        storage = reader.optuna_storage()
        assert storage.get_study_id_from_name("study-seq16") is not None
