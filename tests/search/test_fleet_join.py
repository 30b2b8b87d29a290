"""`tuner auto --join`: several workers share one study on the real PostgreSQL test
server (tests/postgres_helpers.py). Each worker is a process of its own
(tests/search/fleet_worker.py) whose trials a fake runner answers in a second, so
what is tested is the sharing, not the timing: every trial claimed by one worker, a
killed worker's trial failed by its heartbeat and run again by another, the finalists
re-measured once."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner.store import Store

WORKER = Path(__file__).resolve().parent / "fleet_worker.py"
REPO = Path(__file__).resolve().parents[2]


def _start(url: str, marks: Path, seed: int, trials: int, grace: int = 4, delay: float = 1.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, "--trials", str(trials), "--delay", str(delay), "--grace", str(grace),
         "--seed", str(seed), "--marks", str(marks)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _optuna_trials(url: str) -> list:
    import optuna

    storage = optuna.storages.RDBStorage(url)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def _prepare(url: str) -> None:
    """The tables first: this test is about sharing a study, not about creating a database."""
    import optuna

    Store.open(url).close()
    optuna.storages.RDBStorage(url).engine.dispose()


def test_workers_share_one_study_and_run_the_finalists_once(postgres_url: str, tmp_path: Path) -> None:
    # A new database: the three create its tables at once (the store's migration lock, Optuna's tables' lock).
    workers = [_start(postgres_url, tmp_path, seed, trials=9) for seed in range(3)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(a == answers[0] for a in answers), answers  # one decision, read back by the others

    with Store.open(postgres_url) as store:
        (study,) = store.studies()
        rows = store.trials(study.id)
        assert [r.status for r in rows] == ["ok"] * 9  # the budget is the study's, not each worker's
        assert [r.number for r in rows] == list(range(9))
        finalists = store.replays(study.id, kind="finalist")
        runs = collections.Counter((r.role, json.dumps(r.config, sort_keys=True), r.round) for r in finalists)
        assert runs and max(runs.values()) == 1, runs  # each finalist round once, by one worker
        claims = {c.name: c for c in store.claims(study.id)}
        assert set(claims) == {"start", "finalists@8"} and all(c.done for c in claims.values())
    assert {t.number for t in _optuna_trials(postgres_url)} == set(range(9))


def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_run_again(postgres_url: str, tmp_path: Path) -> None:
    _prepare(postgres_url)
    workers = [_start(postgres_url, tmp_path, seed, trials=12, delay=1.5) for seed in range(3)]
    victim = workers[0]
    mark = tmp_path / f"{victim.pid}.running"
    deadline = time.monotonic() + 120
    with Store.open(postgres_url) as store:
        # Killed in the middle of a trial, once the study is under way.
        while time.monotonic() < deadline:
            studies = store.studies()
            if studies and studies[0].n_trials >= 2 and mark.exists() and time.time() - mark.stat().st_mtime < 0.3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the study did not get under way")
    time.sleep(0.5)
    killed_config = json.loads(mark.read_text())
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    for worker in workers[1:]:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    with Store.open(postgres_url) as store:
        (study,) = store.studies()
        rows = store.trials(study.id)
    trials = _optuna_trials(postgres_url)
    # Every Optuna trial has exactly one row (the unique index forbids two), none is left running.
    assert sorted(r.number for r in rows) == sorted(t.number for t in trials)
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    interrupted = [r for r in rows if r.status == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].config == killed_config
    assert "heartbeat" in (interrupted[0].reason or "")
    # The killed worker's configuration was queued again and taken by a live worker after it was failed.
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    retried = next(r for r in rows if r.number == retry.number)
    assert retried.config == killed_config and retry.number > interrupted[0].number
    # Measured once: by the retry, or, where another worker happened to run the same configuration
    # while the victim did (two workers' local searches can propose one neighbour at once), by that
    # worker, whose result the retry then reuses as a duplicate.
    measured = [r for r in rows if r.status == "ok" and r.config == killed_config]
    assert len(measured) == 1, [(r.number, r.status) for r in rows]
    assert retried.status == "ok" or (retried.status == "duplicate" and f"trial {measured[0].number}" in retried.reason)
    assert sum(1 for r in rows if r.status == "ok") == 12
