"""What already held when issue 16 was filed, kept holding: a worker killed by SIGSEGV
is stored as crashed and the study goes on; a hung (stopped) worker is killed with its
group at --trial-timeout and stored as timed out; a second study refuses while one
runs."""

from __future__ import annotations

import signal
import time

import pytest
from fault_helpers import FAST, assert_gone, counted, db_path, start, trials, wait_for, workers

pytestmark = pytest.mark.slow


def test_a_segfault_and_a_hang_are_stored_and_the_study_goes_on(env):
    args = ["auto", *FAST, "--trials", "3", "--trial-timeout", "8", "--min-time", "2"]
    db = db_path(env)
    proc = start(*args, env=env)

    def hurt(number: int, sig: int) -> list:
        wait_for(proc, lambda: len(trials(db)) == number and bool(workers(proc.pid)), what=f"trial {number}")
        time.sleep(0.3)
        hit = workers(proc.pid)
        for worker in hit:
            worker.send_signal(sig)
        return hit

    hurt(0, signal.SIGSEGV)
    hung = hurt(1, signal.SIGSTOP)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_gone(hung, within=1.0)
    rows = trials(db)
    assert rows[0][1] == "crashed" and "SIGSEGV" in (rows[0][3] or ""), rows
    assert rows[1][1] == "timeout" and "no result within 8 s" in (rows[1][3] or ""), rows
    assert len(counted(db)) == 3, rows
    assert "winner" in out
