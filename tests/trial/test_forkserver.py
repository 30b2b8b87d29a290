"""Real trials of the tiny model forked by fork servers: each is a fresh process with
the knobs of its start applied, a server serves only identical starts, a hung trial
is killed without taking its server along, and nothing outlives the pool."""

import os
import signal
from dataclasses import replace

import pytest

from tuner.hardware import detect
from tuner.model import resolve_model
from tuner.trial import spec as S
from tuner.trial.forkserver import ForkServers
from tuner.trial.runner import TrialRunner

FAST = S.MeasureSettings(warmup_calls=2, warmup_seconds=0.05, min_calls=5, min_seconds=0.2)
TORCH = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "none", "allocator": "system",
         "openmp": "gnu", "omp_proc_bind": "unset", "omp_places": "unset", "omp_wait_policy": "unset"}


@pytest.fixture()
def runner(tiny_bert_dir, tmp_path_factory):
    runner = TrialRunner(resolve_model(str(tiny_bert_dir)), detect(), ["A short sentence."], FAST, timeout_s=300,
                         cache_dir=tmp_path_factory.mktemp("cache"), servers=ForkServers())
    yield runner
    runner.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_trials_with_the_same_start_share_a_server_and_each_is_a_fresh_process(runner):
    first, _ = runner.run(S.Workload(16), TORCH, None)
    second, _ = runner.run(S.Workload(16), TORCH, None)
    for result in (first, second):
        assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
        assert result.effective["start"] == "forked" and result.effective["threads"] == 1
    assert runner.servers.started == 1 and runner.servers.reused == 1
    assert first.effective["pid"] != second.effective["pid"] != os.getpid()
    (server,) = runner.servers._servers.values()
    assert server.proc.pid not in (first.effective["pid"], second.effective["pid"])


def test_the_knobs_of_the_start_take_in_a_forked_worker(runner):
    cpus = detect().topology.physical_cpus(set(os.sched_getaffinity(0)))
    config = {**TORCH, "binding": "taskset", "numa_node": 0, "core_order": "last", "allocator": "jemalloc",
              "malloc_conf": "tuned_no_decay", "openmp": "intel", "kmp_affinity": "compact", "kmp_blocktime": 0}
    del config["omp_proc_bind"], config["omp_places"], config["omp_wait_policy"]
    result, plan = runner.run(S.Workload(16), config, None)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
    seen = result.effective
    assert seen["start"] == "forked" and seen["cpus"] == plan.cpus == [cpus[-1]]
    assert seen["malloc"]["kind"] == "jemalloc" and seen["jemalloc"]["dirty_decay_ms"] == -1
    assert seen["openmp"]["runtime"] == "intel" and seen["openmp"]["blocktime"] == 0
    # A different start is a different server: the torch default's would not do.
    runner.run(S.Workload(16), TORCH, None)
    assert runner.servers.started == 2 and runner.servers.reused == 0


def test_a_hung_trial_is_killed_and_its_server_serves_the_next(runner):
    forever = replace(FAST, min_seconds=3600.0, min_calls=10**9)
    hung = replace(runner, measure=forever, timeout_s=4)  # timing stops at 10 s, the deadline first
    result, _ = hung.run(S.Workload(16), TORCH, None)
    assert result.status == S.TIMEOUT
    after, _ = runner.run(S.Workload(16), TORCH, None)
    assert after.status == S.OK and after.effective["start"] == "forked"
    assert runner.servers.started == 1 and runner.servers.reused == 1


def test_a_dead_server_is_replaced_and_closing_the_pool_ends_every_server(runner):
    runner.run(S.Workload(16), TORCH, None)
    (server,) = runner.servers._servers.values()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    result, _ = runner.run(S.Workload(16), TORCH, None)
    assert result.status == S.OK and result.effective["start"] == "forked"
    assert runner.servers.started == 2
    pids = [s.proc.pid for s in runner.servers._servers.values()]
    runner.close()
    assert not any(_alive(pid) for pid in pids)


def test_an_onnxruntime_trial_starts_cold(runner):
    config = {"backend": "onnxruntime", "precision": "fp32", "graph": "unfused", "threads": 1, "binding": "none",
              "allocator": "system"}
    result, _ = runner.run(S.Workload(16), config, None)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
    assert result.effective["start"] == "cold" and runner.servers.started == 0
