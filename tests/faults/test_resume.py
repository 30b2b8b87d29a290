"""Nothing lost: a study killed in any phase, then run again with the same command,
measures every configuration the uninterrupted one would have, the one cut short
first and once (issue 16, items 1 and 7). Every kill is a SIGKILL of the tuner alone,
and no process of the study may be left 5 s later (item 2)."""

from __future__ import annotations

import re
import signal
import time

import pytest
from fault_helpers import (
    FAST,
    NOT_COUNTED,
    assert_gone,
    assert_lock_free,
    copy_study,
    counted,
    db_path,
    in_time_order,
    key,
    kill,
    query,
    run,
    start,
    trials,
    wait_for,
    warm_start_configs,
    workers,
)

pytestmark = pytest.mark.slow


def _kill_during_trial(args: list[str], env: dict[str, str], number: int) -> None:
    """Start the tuner, SIGKILL it while trial ``number`` runs (its worker alive, its
    row not written), and check nothing of it is left running."""
    db = db_path(env)
    proc = start(*args, env=env)
    wait_for(proc, lambda: len(trials(db)) == number and bool(workers(proc.pid)), what=f"trial {number} running")
    time.sleep(0.3)  # inside the trial, not at its start
    left = kill(proc)
    assert left, "the tuner had started no process"
    assert_gone(left, within=5.0)
    assert_lock_free(env["TUNER_LOCK_FILE"])
    assert len(trials(db)) == number, "the trial in flight finished before the kill: choose another moment"


def _check_resumed(db, interrupted_number: int, budget: int) -> dict:
    rows = trials(db)
    cut = next(r for r in rows if r[0] == interrupted_number)
    assert cut[1] == "interrupted", rows
    order = in_time_order(db)
    position = next(i for i, r in enumerate(order) if r[0] == interrupted_number)
    after = [r for r in order[position + 1:] if r[1] not in NOT_COUNTED]
    assert after and key(after[0][2]) == key(cut[2]), (
        f"the interrupted configuration did not run first when the study resumed: {order}")
    measured = counted(db)
    assert len(measured) == budget, rows
    assert len({key(c) for c in measured}) == len(measured), f"a configuration measured twice: {rows}"
    assert [n for n, *_ in rows] == sorted({n for n, *_ in rows}), "a trial number used twice"
    return cut[2]


def test_killed_in_the_warm_start_the_cut_configuration_runs_before_the_rest_of_it(env):
    # Trial 0 is the stock default; the warm start's int8 waits behind it in Optuna's
    # queue. Resumed, the default must run first (it used to go behind the queue and,
    # with a small --trials, never run at all).
    args = ["auto", *FAST, "--trials", "2"]
    _kill_during_trial(args, env, number=0)
    proc = run(*args, env=env)
    assert "resuming study" in proc.stderr
    db = db_path(env)
    _check_resumed(db, 0, budget=2)
    assert {key(c) for c in warm_start_configs()} <= {key(c) for c in counted(db)}


def test_killed_in_the_local_search_the_cut_proposal_runs_first(env, stored):
    copy_study(stored, env)  # its warm start (2 trials) done: trial 2 is the local search's first proposal
    assert len(warm_start_configs()) == 2
    args = ["auto", *FAST, "--trials", "3"]
    _kill_during_trial(args, env, number=2)
    run(*args, env=env)
    db = db_path(env)
    _check_resumed(db, 2, budget=3)
    assert {key(c) for c in warm_start_configs()} <= {key(c) for c in counted(db)}


def test_killed_in_tpe_the_cut_proposal_runs_first(env, stored):
    copy_study(stored, env)  # 2 trials stored; the rest of the study proposed by TPE
    args = ["auto", *FAST, "--strategy", "tpe", "--trials", "3"]
    _kill_during_trial(args, env, number=2)
    run(*args, env=env)
    _check_resumed(db_path(env), 2, budget=3)


def test_killed_during_the_reference_run_the_study_starts_whole(env, tmp_path):
    # Guard sentences of its own, so the fp32 reference is not cached: the tuner is
    # killed while its reference worker (a cold PyTorch process) runs, before any trial.
    texts = tmp_path / "guard.txt"
    texts.write_text("A sentence the reference has not seen.\nAnother one, for the guard.\n")
    args = ["auto", *FAST, "--eval-text", str(texts), "--trials", "2"]
    proc = start(*args, env=env)
    wait_for(proc, lambda: bool(workers(proc.pid)) and not trials(db_path(env)), what="the reference run")
    time.sleep(0.5)
    left = kill(proc)
    assert_gone(left, within=5.0)
    run(*args, env=env)
    rows = trials(db_path(env))
    assert [r[1] for r in rows if r[1] == "interrupted"] == [], rows
    assert {key(c) for c in warm_start_configs()} == {key(c) for c in counted(db_path(env))}


def test_ctrl_c_in_the_finalists_resumes_the_missing_rounds_and_the_summary_agrees(env, stored):
    copy_study(stored, env)  # its 2 trials done: the run goes straight to the finalists
    args = ["auto", *FAST, "--trials", "2", "--finalists", "1", "--finalist-rounds", "3"]  # the last --finalists wins
    db = db_path(env)
    proc = start(*args, env=env)
    wait_for(proc, lambda: bool(query(db, "SELECT count(*) FROM tuner_replays") and
                                query(db, "SELECT count(*) FROM tuner_replays")[0][0] >= 2),
             what="two finalist rounds stored")
    left = kill(proc, signal.SIGINT)
    assert proc.returncode == 130
    assert_gone(left, within=5.0)
    done = run(*args, env=env)
    rounds = query(db, "SELECT trial_id, role, round FROM tuner_replays WHERE kind = 'finalist'")
    assert len(rounds) == len(set(rounds)), f"a round measured twice: {rounds}"
    assert len(rounds) >= 6, rounds  # the default and one finalist, 3 rounds each (more if they had to be separated)
    # Item 7: the summary shows the re-measured figures the speedup divides.
    out = done.stdout
    assert out.count("re-measured  median") >= 1 and "search       median" in out, out
    stated = re.search(r"speedup ([\d.]+)x \(95% CI [\d.]+-[\d.]+\) over the stock default, from the "
                       r"re-measurements \(p50 ([\d.]+) / ([\d.]+) ms", out)
    if stated:  # a finalist significantly faster than the default
        speedup, default_ms, winner_ms = (float(g) for g in stated.groups())
        assert speedup == pytest.approx(default_ms / winner_ms, rel=0.01), out
        remeasured = re.findall(r"re-measured  median ([\d.]+) ms", out)
        assert f"{winner_ms:.3f}" in remeasured and f"{default_ms:.3f}" in remeasured, out
    else:
        assert "speedup: none stated" in out, out
