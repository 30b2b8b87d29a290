"""A write is one transaction: a failure or a kill half-way leaves nothing, writers
in other processes neither lose rows nor fail on each other's locks, and a trial
number recorded twice at the same moment is stored once. On SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.exc import DBAPIError
from store_helpers import execute, is_postgres, raw_engine, scalar

from tuner.store import DuplicateTrialError, NewTrial, Store

if TYPE_CHECKING:
    from tests.store.conftest import Seeded

REPO = Path(__file__).resolve().parents[2]

# A real failure inside the database, in the statement after the trial's INSERT.
_FAILING_STAMP = {
    "sqlite": [
        "CREATE TRIGGER fail_study_stamp BEFORE UPDATE ON tuner_studies BEGIN SELECT RAISE(ABORT, 'disk gremlin'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION fail_study_stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'disk gremlin'; END $$",
        "CREATE TRIGGER fail_study_stamp BEFORE UPDATE ON tuner_studies FOR EACH ROW EXECUTE FUNCTION fail_study_stamp()",
    ],
}


def _run(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_record_trial_failing_after_its_insert_leaves_nothing(db_url: str, seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    execute(db_url, *_FAILING_STAMP["postgresql" if is_postgres(db_url) else "sqlite"])
    with pytest.raises(DBAPIError, match="disk gremlin"):
        store.record_trial(NewTrial(study.id, 0, config={"backend": "torch"}, status="ok", value=1.0))
    assert store.trials(study.id) == [] and not store.has_trial(study.id, 0)
    assert scalar(db_url, "SELECT count(*) FROM tuner_trials") == 0

    execute(db_url, "DROP TRIGGER fail_study_stamp" + (" ON tuner_studies" if is_postgres(db_url) else ""))
    store.record_trial(NewTrial(study.id, 0, config={"backend": "torch"}, status="ok", value=1.0))
    assert [t.number for t in store.trials(study.id)] == [0]


def test_a_kill_in_the_middle_of_a_write_leaves_nothing(db_url: str, seeded: Seeded) -> None:
    seeded.store.record_trial(NewTrial(seeded.study.id, 0, config={}, status="ok"))
    killed = _run(f"""
        import os, signal
        from tuner.store import Store
        from tuner.store._schema import TrialRow

        store = Store.open({db_url!r})
        with store._transaction(write=True) as session:
            session.add(TrialRow(study_id={seeded.study.id}, number=1, config={{}}, status="ok"))
            session.flush()  # the INSERT has reached the database (SQLite's WAL, the server)...
            os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before COMMIT
    """)
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr

    with Store.open(db_url) as store:
        assert [t.number for t in store.trials(seeded.study.id)] == [0]
        store.record_trial(NewTrial(seeded.study.id, 1, config={}, status="ok"))  # the lock died with it
        assert [t.number for t in store.trials(seeded.study.id)] == [0, 1]
    if not is_postgres(db_url):
        assert scalar(db_url, "PRAGMA integrity_check") == "ok"


def test_writers_in_two_processes_interleave_without_errors(db_url: str, seeded: Seeded) -> None:
    """Each write reads before it writes (does the study exist? is the number free?).

    In WAL mode a plain BEGIN would fail at once with 'database is locked' when the
    other process commits between that read and the write; BEGIN IMMEDIATE waits.
    """
    script = f"""
        import sys
        from tuner.store import NewTrial, Store

        first = int(sys.argv[1])
        with Store.open({db_url!r}) as store:
            for number in range(first, first + 40):
                store.upsert_machine({{"n": number}}, "fp-a", "hw-a", "sw-a", "host-a")
                store.record_trial(NewTrial({seeded.study.id}, number, config={{"n": number}}, status="ok"))
    """
    writers = [_run(script, str(first)) for first in (0, 1000)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    with Store.open(db_url) as store:
        numbers = [t.number for t in store.trials(seeded.study.id)]
    assert numbers == list(range(40)) + list(range(1000, 1040))


def test_a_number_another_writer_is_recording_is_refused_once_it_commits(db_url: str, seeded: Seeded) -> None:
    """The race itself, made certain: another transaction has inserted trial 5 and not
    committed. SQLite: our write waits for its lock, then finds the row. PostgreSQL:
    the row is invisible to our check, our INSERT waits on the unique index, then
    fails on it. Both end in DuplicateTrialError and one row."""
    from sqlalchemy.orm import Session

    from tuner.store._schema import TrialRow

    engine = raw_engine(db_url)
    other = engine.connect()
    session = Session(bind=other)
    session.add(TrialRow(study_id=seeded.study.id, number=5, config={"by": "other"}, status="ok"))
    session.flush()  # inserted (SQLite: holding the write lock), not committed
    committer = threading.Timer(0.5, session.commit)
    started = time.monotonic()
    committer.start()
    try:
        with pytest.raises(DuplicateTrialError, match=f"trial 5 of study {seeded.study.id}"):
            seeded.store.record_trial(NewTrial(seeded.study.id, 5, config={"by": "us"}, status="ok"))
        assert time.monotonic() - started >= 0.4  # it waited for the other writer
    finally:
        committer.join()
        session.close()
        other.close()
        engine.dispose()
    (trial,) = seeded.store.trials(seeded.study.id)
    assert (trial.number, trial.config) == (5, {"by": "other"})


def test_processes_recording_the_same_numbers_store_each_once(db_url: str, seeded: Seeded) -> None:
    """Two workers of one study (a fleet's --join) reporting the same trials."""
    script = f"""
        from tuner.store import DuplicateTrialError, NewTrial, Store

        won = lost = 0
        with Store.open({db_url!r}) as store:
            for number in range(30):
                try:
                    store.record_trial(NewTrial({seeded.study.id}, number, config={{}}, status="ok"))
                    won += 1
                except DuplicateTrialError:
                    lost += 1
        print(won, lost)
    """
    writers = [_run(script) for _ in range(2)]
    results = []
    for writer in writers:
        stdout, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
        results.append(tuple(int(n) for n in stdout.split()))
    assert sum(won for won, _ in results) == 30 and sum(lost for _, lost in results) == 30
    assert [t.number for t in seeded.store.trials(seeded.study.id)] == list(range(30))
