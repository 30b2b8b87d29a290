"""Read-only use (issue 16, item 6): on a read-only file system, `tuner best`,
`launch`, `history`, `export` and `load_best` read an existing database; and a
command refused for a user error creates no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fault_helpers import FAST, MODEL, copy_study, db_path, one_line_error, run

pytestmark = pytest.mark.slow


@pytest.fixture
def read_only_data(env, stored, tmp_path):
    """The stored study in a folder mounted read-only (a bind mount: root cannot write
    it either), or, for a user who cannot mount, a folder without write permission."""
    copy_study(stored, env)
    folder = Path(env["TUNER_DATA_DIR"])
    view = tmp_path / "image"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode == 0
    if mounted:
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True)
        if remounted.returncode != 0:
            subprocess.run(["umount", str(view)])
            pytest.skip(f"cannot remount read-only: {remounted.stderr.decode().strip()}")
    elif os.geteuid() == 0:
        pytest.skip("cannot bind-mount here, and root writes into any folder: no read-only file system to test")
    else:
        view.rmdir()
        view = folder
        view.chmod(0o555)
    probe = view / "probe"
    with pytest.raises(OSError):
        probe.write_text("x")
    yield {**env, "TUNER_DATA_DIR": str(view)}
    if mounted:
        subprocess.run(["umount", str(view)])
    else:
        view.chmod(0o755)


def test_the_readers_work_on_a_read_only_file_system(read_only_data, tmp_path):
    env = read_only_data
    before = sorted(os.listdir(env["TUNER_DATA_DIR"]))
    best = json.loads(run("best", "--model", MODEL, "--format", "json", env=env).stdout)
    assert len(best) == 1 and best[0]["seq_len"] == 16 and best[0]["config"]["backend"] == "onnxruntime"
    assert "export OMP_NUM_THREADS" in run("best", "--model", MODEL, "--format", "env", env=env).stdout
    assert "onnxruntime" in run("history", "--model", MODEL, env=env).stdout
    launched = run("launch", "--model", MODEL, "--", sys.executable, "-c",
                   "import os, json; print(json.loads(os.environ['TUNER_CONFIG'])['backend'])", env=env)
    assert launched.stdout.strip() == "onnxruntime"
    out = tmp_path / "export"
    run("export", "--model", MODEL, "--out", str(out), env=env)
    assert {"model", "config.json", "run.sh"} <= set(os.listdir(out))
    loaded = subprocess.run([sys.executable, "-c", (
        "import tuner\n"
        f"predict = tuner.load_best({MODEL!r}, seq_len=16)\n"
        "print(predict(['a sentence']).shape)\n")], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and "(1, 384)" in loaded.stdout, loaded.stderr
    assert sorted(os.listdir(env["TUNER_DATA_DIR"])) == before


def test_a_refused_command_creates_no_file(env):
    data = Path(env["TUNER_DATA_DIR"])
    refused = [
        ["best", "--model", MODEL],
        ["launch", "--model", MODEL, "--", "true"],
        ["export", "--model", MODEL, "--out", str(data.parent / "out")],
        ["auto", "--model", "does/not/exist", "--trials", "1"],
        ["auto", *FAST, "--trial-timeout", "-1"],
        ["verify", "--model", MODEL],
    ]
    for args in refused:
        one_line_error(run(*args, env=env, check=False))
        assert not data.exists(), f"`tuner {' '.join(args)}` created {data}"
    history = run("history", env=env)
    assert "no studies stored" in history.stdout and not data.exists()
    for reader in (["status"], ["machines"]):  # only read: nothing to create
        run(*reader, env=env)
        assert not data.exists(), f"`tuner {reader[0]}` created {data}"


def test_a_run_refused_because_the_machine_is_taken_creates_no_file(env):
    from tuner.search.lock import MachineLock

    with MachineLock(Path(env["TUNER_LOCK_FILE"]), what="a test holding the machine"):
        line = one_line_error(run("auto", *FAST, "--trials", "1", env=env, check=False))
    assert "a test holding the machine" in line and "--wait" in line
    assert not db_path(env).exists()
