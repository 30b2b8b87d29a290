"""Real trials of the tiny model with runtime knobs: the probe proves each took
effect, a knob that did not take makes the trial invalid, and a throughput trial
runs its instances side by side on their own cores."""

import os

import pytest

from tuner.hardware import detect
from tuner.model import resolve_model
from tuner.trial import knobs
from tuner.trial import spec as S
from tuner.trial.runner import TrialRunner

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
FAST = S.MeasureSettings(warmup_calls=2, warmup_seconds=0.05, min_calls=5, min_seconds=0.2)


@pytest.fixture(scope="module")
def runner(tiny_bert_dir, tmp_path_factory):
    return TrialRunner(resolve_model(str(tiny_bert_dir)), detect(), ["A short sentence."], FAST, timeout_s=300,
                       cache_dir=tmp_path_factory.mktemp("cache"))


def test_every_knob_is_applied_and_verified(runner):
    config = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "numactl", "numa_node": 0,
              "core_order": "last", "numa_memory": "localalloc", "allocator": "jemalloc",
              "malloc_conf": "tuned_no_decay", "openmp": "intel", "kmp_affinity": "compact", "kmp_blocktime": 0}
    result, plan = runner.run(S.Workload(16), config, None)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
    seen = result.effective
    last_core = max(detect().topology.physical_cpus(set(os.sched_getaffinity(0))))
    assert seen["cpus"] == plan.cpus == [last_core]
    if plan.notes:  # a machine that refuses numactl: taskset instead, and recorded
        assert plan.notes[0].startswith("numactl refused here") and seen["notes"] == plan.notes
    else:
        assert seen["mempolicy"] == "local"
    assert seen["malloc"]["kind"] == "jemalloc" and seen["jemalloc"]["dirty_decay_ms"] == -1
    assert seen["openmp"]["runtime"] == "intel" and seen["openmp"]["blocktime"] == 0
    assert seen["env"]["KMP_AFFINITY"] == "granularity=fine,compact,1,0"
    assert seen["threads"] == 1


def test_a_preload_that_does_not_load_makes_the_trial_invalid(runner, monkeypatch):
    # The library vanished between planning and start: ld.so says so and runs on without it.
    real = knobs.libraries.require
    monkeypatch.setattr(knobs.libraries, "require",
                        lambda name: "/nonexistent/libjemalloc.so.2" if name == "jemalloc" else real(name))
    config = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "none", "allocator": "jemalloc",
              "malloc_conf": "default", "openmp": "gnu"}
    result, _ = runner.run(S.Workload(16), config, None)
    assert result.status == S.INVALID
    assert "asked for the jemalloc allocator, malloc comes from" in result.reason
    assert "cannot be preloaded" in result.reason
    assert result.samples_ms  # kept for inspection, but an invalid trial has no value


def test_a_missing_library_is_invalid_before_starting(runner, monkeypatch):
    monkeypatch.setenv("TUNER_IOMP5_LIBRARY", "/nonexistent/libiomp5.so")
    config = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "none", "allocator": "system",
              "openmp": "intel", "kmp_affinity": "unset", "kmp_blocktime": 200}
    result, _ = runner.run(S.Workload(16), config, None)
    assert result.status == S.INVALID and "libiomp5.so not found" in result.reason
    assert not result.samples_ms and not result.stats


@pytest.mark.skipif(not TWO_CPUS, reason="two instances need two cores")
def test_throughput_instances_run_side_by_side_on_their_cores(runner):
    config = {"backend": "onnxruntime", "precision": "fp32", "graph": "unfused", "instances": 2,
              "binding": "taskset", "numa_node": 0, "core_order": "first", "allocator": "system"}
    result, plan = runner.run(S.Workload(16), config, None)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
    per_instance = result.effective["instances"]
    cpus = detect().topology.physical_cpus(set(os.sched_getaffinity(0)))[:2]
    assert [e["cpus"] for e in per_instance] == [[cpus[0]], [cpus[1]]]
    assert [e["threads"] for e in per_instance] == [1, 1]
    rates = result.effective["instance_throughput"]
    assert result.stats["throughput"] == pytest.approx(sum(rates))
    assert result.stats["instances"] == 2 and all(r > 0 for r in rates)
    assert result.stats["n"] == len(result.samples_ms)


def test_verify_records_a_fallback_and_judges_against_the_plan():
    from tuner.trial.plan import RuntimePlan
    from tuner.trial.runner import verify

    plan = RuntimePlan(prefix=["taskset", "-c", "0"], cpus=[0], notes=["numactl refused here (...)"],
                       expect={"cpus": [0], "threads": 1})
    ok = verify(S.TrialResult(status=S.OK, effective={"cpus": [0], "threads": 1}), plan)
    assert ok.status == S.OK and ok.effective["notes"] == ["numactl refused here (...)"]
    bad = verify(S.TrialResult(status=S.OK, effective={"cpus": [0, 1], "threads": 1}), plan)
    assert bad.status == S.INVALID and bad.reason == "asked for CPUs 0, the process got 0-1"
    crashed = S.TrialResult(status=S.CRASHED, reason="killed by SIGKILL")
    assert verify(crashed, plan) is crashed


def test_openvino_runs_with_a_preloaded_allocator(runner):
    """oneTBB's RTLD_DEEPBIND made OpenVINO abort under jemalloc/tcmalloc ("free():
    invalid pointer"); the allocator knob sets TBB_ENABLE_SANITIZERS=1 against it."""
    from tuner.cli.measure import build_config
    from tuner.space import load_space

    space = load_space(detect())
    if "openvino" not in space.backends:
        pytest.skip("no openvino backend here")
    config, _ = build_config(space, {"backend": "openvino", "allocator": "tcmalloc", "threads": "1"})
    result, _ = runner.run(S.Workload(16), config, None)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-500:])
    assert result.effective["malloc"]["kind"] == "tcmalloc"
    assert result.effective["env"]["TBB_ENABLE_SANITIZERS"] == "1"
