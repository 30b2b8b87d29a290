"""`tuner auto` against the loopback hub, as a user on a connected machine runs it
(real processes; the issue's checks): a hub id is downloaded and tuned, then tuned
again with the hub gone; an unreachable hub fails in one line, exit 2, within 20 s."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from cli_helpers import run_tuner
from conftest import REPO
from hub_server import Blackhole, LoopbackHub, closed_port, hub_env

# Short trials, no finalists, no noise re-runs or waits, ONNX Runtime only: the flow
# is under test here, not the measurement (as tests/test_end_to_end.py).
FAST = ["--min-time", "0.1", "--seed", "1", "--finalists", "0", "--noise-retries", "0", "--noise-wait", "0",
        "--backends", "onnxruntime"]
UNREACHABLE_LIMIT_S = 20


def test_auto_downloads_and_tunes_then_needs_no_network(hub: LoopbackHub, tmp_path: Path) -> None:
    env = hub_env(dict(os.environ), tmp_path, hub.url)
    first = run_tuner("auto", "--model", REPO, "--seq-len", "16", "--trials", "3", *FAST, env=env, timeout=600)
    assert "winner" in first.stdout, first.stdout
    assert f"downloading {REPO}" in first.stderr and "Fetching" in first.stderr  # the line, then the progress bar
    commit = hub.repos[REPO].commit
    snapshot = tmp_path / "hf-home" / "hub" / "models--org--tiny-bert" / "snapshots" / commit
    assert (snapshot / "model.safetensors").is_file()

    # The resolved revision is stored with the study.
    with sqlite3.connect(tmp_path / "data" / "tuner.db") as db:
        settings = [json.loads(row[0]) for row in db.execute("SELECT settings FROM tuner_studies")]
    assert [s["model_revision"] for s in settings] == [commit]

    hub.stop()  # no hub at all now: the same command, then a deploy lookup
    again = run_tuner("auto", "--model", REPO, "--seq-len", "16", "--trials", "3", *FAST, "--quiet", env=env,
                      timeout=600)
    assert "winner" in again.stdout and "downloading" not in again.stderr, again.stderr
    best = json.loads(run_tuner("best", "--model", REPO, "--format", "json", env=env).stdout)
    assert len(best) == 1 and best[0]["seq_len"] == 16


@pytest.mark.parametrize("endpoint", ["closed port", "blackhole"])
def test_an_unreachable_hub_fails_in_one_line_within_the_limit(tmp_path: Path, endpoint: str) -> None:
    with Blackhole() as blackhole:
        url = blackhole.url if endpoint == "blackhole" else f"http://127.0.0.1:{closed_port()}"
        env = hub_env(dict(os.environ), tmp_path, url)
        start = time.monotonic()
        proc = run_tuner("auto", "--model", "philschmid/MiniLM-L6-H384-uncased-sst2", env=env, check=False,
                         timeout=60)
        elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert elapsed < UNREACHABLE_LIMIT_S, elapsed
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "local folder" in lines[0], proc.stderr
    print(f"{endpoint}: exit 2 after {elapsed:.1f} s: {lines[0]}")


def test_offline_mode_refuses_at_once_without_a_request(hub: LoopbackHub, tmp_path: Path) -> None:
    env = {**hub_env(dict(os.environ), tmp_path, hub.url), "HF_HUB_OFFLINE": "1"}
    proc = run_tuner("auto", "--model", REPO, "--seq-len", "16", env=env, check=False, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0], proc.stderr
    assert hub.api_requests() == []
