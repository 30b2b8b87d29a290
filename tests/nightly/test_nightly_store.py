"""The store's nightly runs and winners (tuner/store/_nightly.py), on SQLite and on
PostgreSQL (the latter skipped without a test server: scripts/with-postgres.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nightly_helpers import machine, record_trial

from tuner._version import __version__
from tuner.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'tuner.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with Store.open(url) as store:
        yield store


def test_a_run_row_from_start_to_interrupted_to_done(any_store: Store) -> None:
    store = any_store
    zen4 = machine("zen4")
    machine_id = store.upsert_machine(zen4.to_dict(), zen4.fingerprint, zen4.hardware_fingerprint,
                                      zen4.software_fingerprint, zen4.hostname)
    plan = [{"key": "m|seq16|batch1|p50", "action": "retune", "reason": "stale: hardware changed: x"}]
    first = store.start_nightly_run(machine_id=machine_id, hostname="box", fingerprint=zen4.fingerprint, pid=1,
                                    settings={"budget_s": 60.0}, plan=plan)
    assert (first.status, first.results, first.plan) == ("running", [], plan)
    store.record_nightly_results(first.id, [{"key": plan[0]["key"], "outcome": "running", "trials_target": 4}])
    assert store.interrupt_nightly_runs("another-host") == []
    [killed] = store.interrupt_nightly_runs("box")
    assert killed.status == "interrupted" and killed.finished is not None
    assert killed.results == [{"key": plan[0]["key"], "outcome": "running", "trials_target": 4}]

    second = store.start_nightly_run(machine_id=machine_id, hostname="box", fingerprint=zen4.fingerprint, pid=2,
                                     settings={}, plan=plan)
    done = store.finish_nightly_run(second.id, status="done", exit_code=3, summary="tuner nightly: m: seq 16 ...",
                                    results=[{"key": plan[0]["key"], "outcome": "tuned", "slower": True}])
    assert (done.status, done.exit_code) == ("done", 3)
    assert [r.id for r in store.nightly_runs()] == [second.id, first.id]
    assert [r.status for r in store.nightly_runs(limit=1, hostname="box")] == ["done"]
    with pytest.raises(ValueError, match="unknown nightly run status"):
        store.finish_nightly_run(second.id, status="great", exit_code=0, summary=None)
    with pytest.raises(KeyError):
        store.record_nightly_results(10_000, [])


def test_winners_carry_what_they_were_chosen_under(any_store: Store) -> None:
    store = any_store
    spr = machine("sapphire_rapids")
    machine_id = store.upsert_machine(spr.to_dict(), spr.fingerprint, spr.hardware_fingerprint,
                                      spr.software_fingerprint, spr.hostname)
    model_pk = store.upsert_model("m", "hash-m", "/models/m", "embedding")
    study = store.get_or_create_study(machine_id, model_pk, 16, 1, "p50", "space-1", "study-1", {"trials": 9})
    trial_id = record_trial(store, study.id, 0, {"backend": "onnxruntime"}, status="ok", value=2.0)
    store.set_best(machine_id, model_pk, 16, 1, "p50", trial_id, {"backend": "onnxruntime"}, {"value": 2.0}, 4.0, 2.0)
    [winner] = store.winners()
    assert (winner.machine.fingerprint, winner.model.content_hash, winner.space_hash) == (spr.fingerprint, "hash-m",
                                                                                         "space-1")
    assert (winner.study_settings, winner.optuna_study_name, winner.tuner_version) == ({"trials": 9}, "study-1",
                                                                                      __version__)
    assert winner.best.trial_id == trial_id and winner.best.model_id == "m"
    assert store.winners(machine_ids=[machine_id + 1]) == []
