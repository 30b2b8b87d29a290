"""`tuner auto`, `best` and `history` as a user runs them: real processes, a real
SQLite file, a tiny model built from a config (no download)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from cli_helpers import run_tuner


@pytest.fixture
def env(tmp_path):
    # A database and a lock per test; the artifact cache (ONNX exports, fp32 references,
    # tokenized inputs) is the session's (tests/conftest.py): it is keyed by content,
    # so sharing it changes no result and spares every test the conversions.
    return {
        **os.environ,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }


def tuner(*args, env, timeout=600, check=True):
    return run_tuner(*args, env=env, timeout=timeout, check=check)


# Short trials, no finalists, no noise re-runs or waits: these tests are about the flow;
# the protocol's own tests turn each of those on.
FAST = ["--min-time", "0.1", "--quiet", "--seed", "1", "--finalists", "0", "--noise-retries", "0", "--noise-wait", "0",
        "--backends", "torch,onnxruntime"]


def test_missing_model_fails_fast_with_one_line(env):
    start = time.monotonic()
    proc = tuner("auto", "--model", "does/not/exist", env=env, check=False, timeout=60)
    assert proc.returncode == 2
    assert time.monotonic() - start < 20
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does/not/exist" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_auto_then_best_and_history(tiny_bert_dir, env):
    proc = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "4", *FAST, env=env)
    assert "winner" in proc.stdout and "speedup" in proc.stdout, proc.stdout

    best = json.loads(tuner("best", "--model", str(tiny_bert_dir), "--format", "json", env=env).stdout)
    assert len(best) == 1 and best[0]["seq_len"] == 16
    assert best[0]["config"]["backend"] in ("torch", "onnxruntime")
    assert best[0]["metrics"]["median_ms"] > 0

    env_lines = tuner("best", "--model", str(tiny_bert_dir), "--format", "env", env=env).stdout
    assert "export OMP_NUM_THREADS=" in env_lines and "export TUNER_CONFIG=" in env_lines
    shell = tuner("best", "--model", str(tiny_bert_dir), "--format", "shell", env=env).stdout.strip()
    # The prefix runs a command for real.
    out = subprocess.run(f"{shell} python3 -c 'import os; print(os.environ[\"OMP_NUM_THREADS\"])'",
                         shell=True, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(best[0]["config"]["threads"])

    history = tuner("history", "--model", str(tiny_bert_dir), env=env).stdout
    assert "seq 16" in history
    numbers = [line.split()[0] for line in history.splitlines() if line.strip()[:1].isdigit()]
    assert len(numbers) >= 4 and len(numbers) == len(set(numbers))


def _counted_rows(db: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT number, status FROM tuner_trials ORDER BY number").fetchall()


def test_sigkill_during_a_trial_then_resume(tiny_bert_dir, env, tmp_path):
    args = ["auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "5", *FAST]
    db = str(tmp_path / "data" / "tuner.db")
    proc = subprocess.Popen([sys.executable, "-m", "tuner", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait until two trials are stored, then kill the tuner in the middle of the next one.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if os.path.exists(db):
            try:
                if len(_counted_rows(db)) >= 2:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("no trials were stored within 300 s")
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    tuner(*args, env=env)
    rows = _counted_rows(db)
    numbers = [n for n, _ in rows]
    assert len(numbers) == len(set(numbers)), rows
    counted = [s for _, s in rows if s not in ("duplicate", "interrupted")]
    assert len(counted) == 5, rows
    history = tuner("history", "--model", str(tiny_bert_dir), env=env).stdout
    shown = [line.split()[0] for line in history.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(int(n) for n in shown) == sorted(numbers)


def test_second_run_refuses_while_one_holds_the_machine(tiny_bert_dir, env, tmp_path):
    from tuner.search.lock import MachineLock
    from pathlib import Path

    with MachineLock(Path(env["TUNER_LOCK_FILE"]), what="a test holding the machine"):
        proc = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "1", *FAST,
                     env=env, check=False)
    assert proc.returncode == 2
    assert "a test holding the machine" in proc.stderr and "--wait" in proc.stderr


def test_unwritable_database_is_one_clear_line(tiny_bert_dir, env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = tuner("auto", "--model", str(tiny_bert_dir), "--trials", "1", "--db",
                 f"sqlite:///{blocker}/sub/tuner.db", *FAST, env=env, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def _query(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


PROTOCOL = ["--min-time", "0.1", "--quiet", "--seed", "1", "--noise-retries", "0", "--noise-wait", "0",
            "--backends", "torch,onnxruntime"]


@pytest.mark.slow
def test_finalists_state_a_confidence_interval_and_verify_replays_it(tiny_bert_dir, env, tmp_path):
    db = str(tmp_path / "data" / "tuner.db")
    proc = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "2", "--finalists", "1",
                 "--finalist-rounds", "3", *PROTOCOL, env=env)
    assert "finalist trial" in proc.stdout and "95% CI" in proc.stdout, proc.stdout
    (best,) = json.loads(tuner("best", "--model", str(tiny_bert_dir), "--format", "json", env=env).stdout)
    low, high = best["speedup_ci95"]
    assert best["significant"] is True and low > 1.0 and low <= best["speedup"] <= high
    # The default and the finalist, 3 fresh processes each, interleaved with a rotating order.
    roles = _query(db, "SELECT round, role FROM tuner_replays WHERE kind = 'finalist' ORDER BY id")
    assert roles == [(0, "default"), (0, "candidate"), (1, "candidate"), (1, "default"),
                     (2, "default"), (2, "candidate")]
    shell = tuner("best", "--model", str(tiny_bert_dir), "--format", "shell", env=env)
    assert "95% CI" in shell.stderr and "95% CI" not in shell.stdout  # stdout stays a prefix

    verify = tuner("verify", "--model", str(tiny_bert_dir), "--rounds", "3", *PROTOCOL[:2], "--noise-retries", "0",
                   "--noise-wait", "0", env=env, check=False)
    assert verify.returncode in (0, 3), verify.stderr
    assert "speedup" in verify.stdout and "95% CI" in verify.stdout
    if verify.returncode == 0:
        assert "it holds" in verify.stdout
    else:  # a busy machine can move the figure; then it must say so, on stderr
        assert "no longer holds" in verify.stderr
    assert _query(db, "SELECT count(*) FROM tuner_replays WHERE kind = 'verify'") == [(6,)]

    # A second `tuner auto` with nothing new to measure reuses the stored re-measurements.
    again = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "2", "--finalists", "1",
                  "--finalist-rounds", "3", *PROTOCOL, env=env)
    assert "95% CI" in again.stdout
    assert _query(db, "SELECT count(*) FROM tuner_replays WHERE kind = 'finalist'") == [(6,)]


@pytest.mark.slow
def test_pareto_objective_stores_and_shows_a_front(tiny_bert_dir, env, tmp_path):
    db = str(tmp_path / "data" / "tuner.db")
    proc = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "3", "--objective", "pareto",
                 *FAST[:-1], "onnxruntime", env=env)
    assert "Pareto front" in proc.stdout, proc.stdout
    ((front,),) = _query(db, "SELECT pareto FROM tuner_studies")
    numbers = json.loads(front)
    assert numbers
    rows = {n: (status, median, rate) for n, status, median, rate in
            _query(db, "SELECT number, status, median_ms, throughput FROM tuner_trials")}
    feasible = {n: (m, r) for n, (status, m, r) in rows.items() if status == "ok"}
    for n in numbers:  # each front member is feasible and nothing feasible beats it on both
        m, r = feasible[n]
        assert not any(m2 <= m and r2 >= r and (m2 < m or r2 > r) for m2, r2 in feasible.values())
    history = tuner("history", "--model", str(tiny_bert_dir), "--pareto", env=env).stdout
    shown = [int(line.split()[0]) for line in history.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(shown) == sorted(numbers)


def test_max_memory_is_a_constraint(tiny_bert_dir, env, tmp_path):
    db = str(tmp_path / "data" / "tuner.db")
    proc = tuner("auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "2", "--max-memory", "20M",
                 *FAST[:-1], "onnxruntime", env=env)
    assert "no configuration passed" in proc.stdout
    rows = _query(db, "SELECT status, reason, peak_rss_mb FROM tuner_trials")
    assert rows and all(status == "rejected" and "--max-memory 20 MB" in reason and peak > 20
                        for status, reason, peak in rows), rows
    bad = tuner("auto", "--model", str(tiny_bert_dir), "--max-memory", "lots", *FAST, env=env, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--max-memory" in bad.stderr
