"""A write is one transaction: a failure or a kill half-way leaves nothing, and
writers in other processes neither lose rows nor fail on each other's locks."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.exc import IntegrityError

from tuner.store import Store

if TYPE_CHECKING:
    from tests.store.conftest import Seeded

REPO = Path(__file__).resolve().parents[2]


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as raw:
        return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_record_trial_failing_after_its_insert_leaves_nothing(db_path: Path, seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    # A real failure inside the database, in the statement after the trial's INSERT.
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "CREATE TRIGGER fail_study_stamp BEFORE UPDATE ON tuner_studies "
            "BEGIN SELECT RAISE(ABORT, 'disk gremlin'); END"
        )
    with pytest.raises(IntegrityError, match="disk gremlin"):
        store.record_trial(study.id, 0, config={"backend": "torch"}, status="ok", value=1.0)
    assert store.trials(study.id) == [] and not store.has_trial(study.id, 0)
    assert _count(db_path, "tuner_trials") == 0

    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TRIGGER fail_study_stamp")
    store.record_trial(study.id, 0, config={"backend": "torch"}, status="ok", value=1.0)
    assert [t.number for t in store.trials(study.id)] == [0]


def test_a_kill_in_the_middle_of_a_write_leaves_nothing(db_path: Path, seeded: Seeded) -> None:
    seeded.store.record_trial(seeded.study.id, 0, config={}, status="ok")
    script = textwrap.dedent(f"""
        import os, signal
        from tuner.store import Store
        from tuner.store._schema import TrialRow

        store = Store.open({str(db_path)!r})
        with store._transaction(write=True) as session:
            session.add(TrialRow(study_id={seeded.study.id}, number=1, config={{}}, status="ok"))
            session.flush()  # the INSERT has reached the database file's WAL...
            os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before COMMIT
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr

    with Store.open(f"sqlite:///{db_path}") as store:
        assert [t.number for t in store.trials(seeded.study.id)] == [0]
        store.record_trial(seeded.study.id, 1, config={}, status="ok")  # the lock died with it
        assert [t.number for t in store.trials(seeded.study.id)] == [0, 1]
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_writers_in_two_processes_interleave_without_errors(db_path: Path, seeded: Seeded) -> None:
    """Each write reads before it writes (does the study exist? is the number free?).

    In WAL mode a plain BEGIN would fail at once with 'database is locked' when the
    other process commits between that read and the write; BEGIN IMMEDIATE waits.
    """
    script = textwrap.dedent(f"""
        import sys
        from tuner.store import Store

        first = int(sys.argv[1])
        with Store.open({str(db_path)!r}) as store:
            for number in range(first, first + 40):
                store.upsert_machine({{"n": number}}, "fp-a", "hw-a", "sw-a", "host-a")
                store.record_trial({seeded.study.id}, number, config={{"n": number}}, status="ok")
    """)
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(first)], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for first in (0, 1000)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    with Store.open(f"sqlite:///{db_path}") as store:
        numbers = [t.number for t in store.trials(seeded.study.id)]
    assert numbers == list(range(40)) + list(range(1000, 1040))
