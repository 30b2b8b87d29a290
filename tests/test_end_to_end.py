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


@pytest.fixture
def env(tmp_path):
    return {
        **os.environ,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_CACHE_DIR": str(tmp_path / "cache"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }


def tuner(*args, env, timeout=600, check=True):
    proc = subprocess.run([sys.executable, "-m", "tuner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tuner {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


FAST = ["--min-time", "0.1", "--quiet", "--seed", "1"]


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
