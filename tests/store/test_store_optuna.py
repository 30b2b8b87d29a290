"""Optuna's RDBStorage and the store share one database (a SQLite file, a PostgreSQL
database): both schemas coexist, each with its own Alembic version table, in
whichever order they are created."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy import inspect, text
from store_helpers import raw_engine

from tuner.store import NewTrial, Store
from tuner.store._schema import SCHEMA_HEAD, VERSION_TABLE

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run_optuna(url: str, name: str) -> optuna.storages.RDBStorage:
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    study.optimize(lambda trial: (trial.suggest_float("x", -1, 1) - 0.25) ** 2, n_trials=3)
    return storage


def _check_both(url: str, storage: optuna.storages.RDBStorage, optuna_trials: int) -> None:
    engine = raw_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            ours = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
            theirs = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()
    assert {"studies", "trials", "alembic_version", "tuner_trials", VERSION_TABLE} <= names
    assert ours == [SCHEMA_HEAD]
    assert theirs == [storage.get_head_version()]
    assert storage.get_current_version() == storage.get_head_version()
    storage.upgrade()  # Optuna's own migration run leaves our tables alone
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == optuna_trials


@pytest.mark.parametrize("store_first", [True, False], ids=["store-first", "optuna-first"])
def test_optuna_and_the_store_share_a_database(db_url: str, store_first: bool) -> None:
    url = db_url
    if store_first:
        store = Store.open(url)
        storage = _run_optuna(store.url, "s")
    else:
        storage = _run_optuna(url, "s")
        store = Store.open(url)
    with store:
        machine = store.upsert_machine({}, "fp", "hw", "sw", "host")
        model = store.upsert_model("m", "h", "/m", "embedding")
        study = store.get_or_create_study(machine, model, 16, 1, "p50", "space", "s", {})
        for frozen in optuna.load_study(study_name="s", storage=storage).trials:
            store.record_trial(NewTrial(study.id, frozen.number, config=frozen.params, status="ok", value=frozen.value))
    _check_both(url, storage, 3)

    # A later run: Optuna adds trials and the store re-opens without migrating.
    _run_optuna(url, "s")
    with Store.open(url) as again:
        (study,) = again.studies()
        assert study.n_trials == 3
    _check_both(url, storage, 6)


def test_models_still_match_the_migrations_beside_optunas_tables(store: Store) -> None:
    """Autogenerate must not propose to drop Optuna's tables (env.py's include_name)."""
    from alembic import command

    from tuner.store import _migrate

    _run_optuna(store.url, "s")
    with store._engine.connect() as conn:
        command.check(_migrate.alembic_config(conn))
