"""Nothing orphaned (issue 16, item 2): the processes of a study die with its tuner,
also a stopped one and one forked by a fork server, and the machine lock is held
until the last of them is gone. (A cold trial's worker: tests/faults/test_resume.py
kills the tuner in each of them.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fault_helpers import (
    FAST,
    MODEL,
    assert_gone,
    assert_lock_free,
    db_path,
    kill,
    lock_is_free,
    start,
    trials,
    wait_for,
    workers,
)

pytestmark = pytest.mark.slow


def test_a_forked_trial_dies_with_its_tuner(env):
    # PyTorch trials are forked by a fork server: the tuner -> server -> forked worker.
    args = ["auto", "--model", MODEL, "--seq-len", "16", "--backends", "torch", "--trials", "1", "--finalists", "0",
            "--min-time", "5", "--quiet", "--noise-retries", "0", "--noise-wait", "0"]
    proc = start(*args, env=env)

    def forked() -> bool:
        return any(p.ppid() != proc.pid for p in workers(proc.pid) if p.is_running())

    wait_for(proc, forked, what="a trial forked by a fork server")
    time.sleep(0.5)
    left = kill(proc)
    assert len(left) >= 2, left  # the server and its forked worker at least
    assert_gone(left, within=5.0)
    assert_lock_free(env["TUNER_LOCK_FILE"])


def test_a_stopped_trial_dies_with_its_tuner(env):
    args = ["auto", *FAST, "--min-time", "5", "--trials", "1"]
    proc = start(*args, env=env)
    wait_for(proc, lambda: bool(workers(proc.pid)), what="a trial running")
    time.sleep(0.3)
    stopped = workers(proc.pid)
    for worker in stopped:
        worker.send_signal(signal.SIGSTOP)  # hung: it will never read or write again
    deadline = time.monotonic() + 5
    while not all(w.status() == psutil.STATUS_STOPPED for w in stopped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(w.status() == psutil.STATUS_STOPPED for w in stopped)
    left = kill(proc)
    assert_gone(left, within=5.0)
    assert_lock_free(env["TUNER_LOCK_FILE"])
    assert not trials(db_path(env))


def test_the_lock_stays_held_while_a_process_of_the_study_lives(tmp_path):
    """An flock is held while any process holds the open file it was taken on: a
    process the study started keeps the machine taken after its tuner let go."""
    from tuner.search.lock import MachineLock
    from tuner.trial import lifeline

    path = tmp_path / "machine.lock"
    with MachineLock(path, what="a test"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 pass_fds=lifeline.inherited_fds(), preexec_fn=lifeline.preexec(),
                                 start_new_session=True)
    try:
        assert not lock_is_free(path), "the lock went with the tuner while a process of its study lived"
    finally:
        child.kill()
        child.wait()
    assert lock_is_free(path)


def test_a_rerun_stops_what_a_dead_run_left_holding_the_lock(tmp_path, capfd):
    """Should a process of a killed run survive anyway (here: one that never asked to
    die with its parent), the next run stops it, says so, and takes the machine."""
    from tuner.search.lock import MachineLock

    path = tmp_path / "machine.lock"
    orphan = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(path)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.seek(0); f.truncate(); f.write('pid 999999999, tuner auto --model m, since then\\n'); f.flush()\n"
        "print('locked', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert orphan.stdout is not None and orphan.stdout.readline().strip() == "locked"
        with MachineLock(path, what="the rerun"):
            assert orphan.wait(timeout=10) == -signal.SIGKILL
            assert Path(path).read_text().startswith(f"pid {os.getpid()},")
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert "left running by an earlier tuning run" in capfd.readouterr().err


def test_a_live_run_is_not_taken_for_a_dead_one(tmp_path):
    from tuner.errors import LockedError
    from tuner.search.lock import MachineLock

    path = tmp_path / "machine.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tuner.search.lock import MachineLock\n"
        f"with MachineLock(Path({str(path)!r}), what='a live run'):\n"
        "    print('locked', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="a live run"):
            with MachineLock(path, what="a second run"):
                pass
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
