"""$TUNER_HW_ROOT: a `tuner` process that sees itself on a captured machine, as the
nightly tests use it to move a database between CPUs."""

from __future__ import annotations

import json
import os
import socket

from cli_helpers import run_tuner
from nightly_helpers import FIXTURES, on

from tuner.hardware import detect


def test_a_process_sees_the_captured_cpu_and_keeps_its_own(env: dict[str, str]) -> None:
    seen = json.loads(run_tuner("detect", "--json", env=on(env, "zen4")).stdout)
    captured = detect(str(FIXTURES / "zen4"))
    assert seen["cpu"]["model_name"] == "AMD EPYC 9R14" and seen["fingerprint"] == captured.fingerprint
    assert seen["hostname"] == socket.gethostname()  # the tree has no hostname: this host's
    assert set(seen["available_cpus"]) <= os.sched_getaffinity(0)  # where its trials really run
    assert seen["gpus"] == []

    cascade = json.loads(run_tuner("detect", "--json", env=on(env, "cascade_lake_2s")).stdout)
    assert cascade["hostname"] == "db-node-07" and cascade["topology"]["sockets"] == 2

    bad = run_tuner("detect", env={**env, "TUNER_HW_ROOT": str(FIXTURES)}, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "has no proc/cpuinfo" in bad.stderr


def test_an_explicit_root_is_read_as_given(monkeypatch) -> None:
    monkeypatch.setenv("TUNER_HW_ROOT", str(FIXTURES / "zen4"))
    assert detect(str(FIXTURES / "graviton3")).cpu.arch == "aarch64"
    assert detect().cpu.model_name == "AMD EPYC 9R14"
    assert detect("/").fingerprint != detect().fingerprint
