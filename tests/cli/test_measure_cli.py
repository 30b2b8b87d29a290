"""`tuner measure`: one configuration, one trial, its effective settings shown."""

import json
import os
import subprocess
import sys

import pytest

from tuner.cli.measure import build_config, parse_sets
from tuner.errors import UserError
from tuner.hardware import detect
from tuner.space import load_space


@pytest.fixture
def env(tmp_path):
    return {
        **os.environ,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }


def measure(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuner", "measure", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


FAST = ["--seq-len", "16", "--min-time", "0.2"]


def test_the_asked_knobs_are_exactly_the_effective_ones(tiny_bert_dir, env):
    proc = measure("--model", str(tiny_bert_dir), *FAST, "--json",
                   "--set", "allocator=jemalloc", "--set", "openmp=intel", "--set", "kmp_affinity=compact",
                   "--set", "binding=taskset", "--set", "threads=1", "--set", "core_order=last", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["stats"]["median"] > 0
    assert data["config"]["kmp_blocktime"] == 200  # a key not given takes the space's default
    seen = data["effective"]
    last_core = max(detect().topology.physical_cpus(set(os.sched_getaffinity(0))))
    assert data["plan"]["prefix"] == ["taskset", "-c", str(last_core)]
    assert seen["cpus"] == [last_core]
    assert seen["malloc"]["kind"] == "jemalloc"
    assert seen["openmp"]["runtime"] == "intel"
    assert seen["env"]["KMP_AFFINITY"] == "granularity=fine,compact,1,0"
    assert seen["env"]["LD_PRELOAD"] == data["plan"]["env"]["LD_PRELOAD"]


def test_text_output(tiny_bert_dir, env):
    proc = measure("--model", str(tiny_bert_dir), *FAST, "--set", "omp_wait_policy=passive",
                   "--set", "allocator=tcmalloc", "--set", "binding=numactl", "--set", "numa_memory=localalloc",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("torch fp32 (")
    assert "OMP_WAIT_POLICY=passive" in out and "openmp: gnu" in out
    assert "  status     ok" in out and "  latency    median" in out and "accuracy   cos mean" in out
    assert "malloc: tcmalloc" in out
    if "numactl refused here" not in out:  # a container without set_mempolicy falls back to taskset
        assert "binding: numactl --physcpubind=" in out and "--localalloc" in out and "memory policy local" in out


def test_missing_library_is_reported_invalid_not_as_a_result(tiny_bert_dir, env):
    env = {**env, "TUNER_JEMALLOC_LIBRARY": "/nonexistent/libjemalloc.so.2"}
    proc = measure("--model", str(tiny_bert_dir), *FAST, "--set", "allocator=jemalloc", "--json", env=env)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["status"] == "invalid"
    assert data["reason"].startswith("libjemalloc.so.2 not found: $TUNER_JEMALLOC_LIBRARY names /nonexistent")
    assert data["stats"] == {}
    assert "allocator=jemalloc is pruned from the space here" in proc.stderr


def test_unknown_key_is_one_line(tiny_bert_dir, env):
    proc = measure("--model", str(tiny_bert_dir), "--set", "alocator=jemalloc", env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown key 'alocator' for backend torch" in proc.stderr


@pytest.fixture(scope="module")
def space():
    return load_space(detect())


def test_build_config_fills_defaults_and_types_values(space):
    config, warnings = build_config(space, parse_sets(["openmp=intel", "kmp_blocktime=0", "threads=1"]))
    assert config["kmp_blocktime"] == 0 and config["threads"] == 1 and config["kmp_affinity"] == "unset"
    assert "omp_proc_bind" not in config and warnings == []
    assert space.validate(config) == config
    ort, _ = build_config(space, parse_sets(["backend=onnxruntime"]))
    assert "openmp" not in ort and ort["allocator"] == "system"


@pytest.mark.parametrize(("sets", "message"), [
    (["openmp=intel", "omp_places=cores"], "omp_places does not apply to backend torch unless openmp = gnu"),
    (["backend=onnxruntime", "openmp=gnu"], "openmp does not apply to backend onnxruntime (only to torch"),
    (["allocator=mimalloc"], "allocator=mimalloc is not allowed for backend torch (allowed: system, jemalloc, tcmalloc)"),
    (["threads"], "--set 'threads': write KEY=VALUE"),
])
def test_build_config_errors(space, sets, message):
    with pytest.raises(UserError) as info:
        build_config(space, parse_sets(sets))
    assert message in str(info.value)
