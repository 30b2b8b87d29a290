"""A noisy neighbour during a study: a process spinning on CPU 0 while `tuner auto`
runs. Every trial that shares CPU 0 must be flagged noisy, and its stored noise
check must name the neighbour."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed"),
]


@pytest.fixture
def neighbour():
    """A busy loop pinned to CPU 0 (started through a shell, so it is no child of ours)."""
    out = subprocess.run(["sh", "-c", f"taskset -c 0 {sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out.strip())
    time.sleep(0.3)
    yield pid
    os.kill(pid, 9)


def test_a_busy_process_on_the_same_core_is_detected_and_recorded(tiny_bert_dir, tmp_path, neighbour):
    env = {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "lock")}
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "auto", "--model", str(tiny_bert_dir), "--seq-len", "16", "--trials", "2",
         "--min-time", "0.3", "--quiet", "--seed", "1", "--finalists", "0", "--noise-retries", "1",
         "--noise-wait", "0", "--backends", "onnxruntime"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "data" / "tuner.db") as conn:
        rows = conn.execute("SELECT number, status, flags, noise, effective FROM tuner_trials").fetchall()
    timed = [(n, json.loads(flags or "[]"), json.loads(noise), json.loads(effective or "{}"))
             for n, status, flags, noise, effective in rows if noise]
    on_cpu0 = [t for t in timed if 0 in t[3].get("cpus", [0])]
    assert on_cpu0, rows
    for number, flags, noise, _ in on_cpu0:
        assert "noisy" in flags, (number, flags, noise)
        assert noise["during"]["noisy"] and noise["during"]["other_cpu"] > 0.3
        assert noise["attempts"] == 2 and noise["noisy_attempts"] == 2  # re-run once, noisy both times
        assert neighbour in [p["pid"] for p in noise["before"]["busy_processes"]]
    # Warned about in words, and shown by `tuner history`.
    assert "running it again" in proc.stderr and "marked noisy" in proc.stderr
    history = subprocess.run([sys.executable, "-m", "tuner", "history"], env=env, capture_output=True, text=True,
                             check=True).stdout
    assert "noisy" in history and "[noise: others used" in history
