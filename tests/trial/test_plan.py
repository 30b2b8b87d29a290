"""From a configuration to a process plan: binding on real and captured topologies,
preloads and variables per knob, and what the probe is then asked to find."""

from pathlib import Path

import pytest

from tuner.hardware import detect
from tuner.trial import plan as P
from tuner.trial.knobs import MANAGED_VARIABLES
from tuner.hardware.libraries import MissingLibraryError, find

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
ORT = {"backend": "onnxruntime", "precision": "fp32", "graph": "unfused"}
TORCH = {"backend": "torch", "precision": "fp32"}


@pytest.fixture
def clx(monkeypatch):
    """The captured 2-socket Cascade Lake: nodes 0 = CPUs 0-3 (+ SMT 8-11), 1 = 4-7 (+ 12-15).
    numactl cannot be tried for a machine we are not on: treat it as allowed."""
    monkeypatch.setattr(P, "numactl_refusal", lambda args: None)
    return detect(str(FIXTURES / "cascade_lake_2s"))


def test_unbound_plan_sets_threads_only():
    host = detect()
    plan = P.plan_runtime({**ORT, "threads": 1, "binding": "none"}, host)
    assert plan.prefix == [] and plan.cpus is None
    assert plan.env == {"OMP_NUM_THREADS": "1"}
    assert plan.expect == {"threads": 1, "malloc": "system", "env": {"OMP_NUM_THREADS": "1"}}
    assert set(plan.unset) == set(MANAGED_VARIABLES) - {"OMP_NUM_THREADS"}


def test_node_choice_on_a_two_socket_machine(clx):
    plan = P.plan_runtime({**ORT, "threads": 4, "binding": "numactl", "numa_node": 1, "numa_memory": "membind"}, clx)
    assert plan.prefix == ["numactl", "--physcpubind=4-7", "--membind=1"]
    assert plan.expect["mempolicy"] == "bind:1" and plan.expect["cpus"] == [4, 5, 6, 7]
    local = P.plan_runtime({**ORT, "threads": 2, "binding": "numactl", "numa_node": 0, "numa_memory": "localalloc"}, clx)
    assert local.prefix == ["numactl", "--physcpubind=0-1", "--localalloc"] and local.expect["mempolicy"] == "local"
    # More threads than a node has cores: the start node fills, then the next one.
    wide = P.plan_runtime({**ORT, "threads": 6, "binding": "numactl", "numa_node": 1}, clx)
    assert wide.prefix == ["numactl", "--physcpubind=0-1,4-7", "--membind=0-1"]
    # One thread per physical core before any SMT sibling.
    all_cores = P.plan_runtime({**ORT, "threads": 8, "binding": "taskset"}, clx)
    assert all_cores.cpus == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="NUMA node"):
        P.plan_runtime({**ORT, "threads": 2, "binding": "taskset", "numa_node": 2}, clx)


def test_core_order_last_leaves_the_first_cores(clx):
    plan = P.plan_runtime({**ORT, "threads": 2, "binding": "taskset", "numa_node": 1, "core_order": "last"}, clx)
    assert plan.cpus == [7, 6] and plan.prefix == ["taskset", "-c", "6-7"]
    spill = P.plan_runtime({**ORT, "threads": 6, "binding": "taskset", "numa_node": 0, "core_order": "last"}, clx)
    assert sorted(spill.cpus) == [0, 1, 2, 3, 6, 7]


def test_instances_split_the_cores_node_by_node(clx):
    config = {**ORT, "instances": 2, "binding": "numactl", "numa_node": 0, "numa_memory": "membind"}
    plans = P.plan_instances(config, clx)
    assert [p.prefix for p in plans] == [["numactl", "--physcpubind=0-3", "--membind=0"],
                                         ["numactl", "--physcpubind=4-7", "--membind=1"]]
    assert [p.env["OMP_NUM_THREADS"] for p in plans] == ["4", "4"]
    assert [(p.instance, p.instances) for p in plans] == [(0, 2), (1, 2)]
    four = P.plan_instances({**ORT, "instances": 4, "binding": "taskset"}, clx)
    assert [p.cpus for p in four] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert P.threads_per_instance({**ORT, "instances": 3}, clx) == 2  # 8 cores // 3; two stay idle
    with pytest.raises(ValueError, match="9 instances need at least 9 physical cores"):
        P.plan_instances({**ORT, "instances": 9, "binding": "none"}, clx)


def test_numactl_refused_falls_back_to_taskset(tmp_path, monkeypatch):
    # A container that forbids set_mempolicy (seccomp) makes numactl fail like this.
    fake = tmp_path / "numactl"
    fake.write_text("#!/bin/sh\necho 'set_mempolicy: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    plan = P.plan_runtime({**ORT, "threads": 1, "binding": "numactl", "numa_node": 0}, detect())
    assert plan.prefix[:2] == ["taskset", "-c"]
    assert "mempolicy" not in plan.expect
    assert plan.notes == [f"numactl refused here (set_mempolicy: Operation not permitted); bound with taskset -c "
                          f"{plan.prefix[2]} instead, without a memory policy"]


def test_real_numactl_is_accepted_here():
    if P.numactl_refusal(["--physcpubind=0", "--localalloc"]):
        pytest.skip("numactl is refused on this machine (a container without set_mempolicy)")
    plan = P.plan_runtime({**ORT, "threads": 1, "binding": "numactl", "numa_node": 0, "numa_memory": "localalloc"},
                          detect())
    assert plan.prefix[0] == "numactl" and plan.notes == []


def test_allocator_and_openmp_variables():
    host = detect()
    config = {**TORCH, "threads": 1, "binding": "none", "allocator": "jemalloc", "malloc_conf": "tuned",
              "openmp": "intel", "kmp_affinity": "compact", "kmp_blocktime": 0}
    plan = P.plan_runtime(config, host)
    # The allocator first: it must own malloc before anything else allocates.
    assert plan.env["LD_PRELOAD"] == f"{find('jemalloc')}:{find('iomp5')}"
    assert plan.env["MALLOC_CONF"] == "oversize_threshold:1,background_thread:true,metadata_thp:auto"
    assert plan.env["KMP_AFFINITY"] == "granularity=fine,compact,1,0" and plan.env["KMP_BLOCKTIME"] == "0"
    assert plan.expect["malloc"] == "jemalloc" and plan.expect["openmp"] == "intel"
    assert plan.expect["jemalloc"]["background_thread"] is True and plan.expect["kmp_blocktime"] == 0
    assert "OMP_PROC_BIND" not in plan.env
    gnu = P.plan_runtime({**TORCH, "threads": 1, "binding": "taskset", "allocator": "tcmalloc", "openmp": "gnu",
                          "omp_proc_bind": "spread", "omp_places": "threads", "omp_wait_policy": "passive"}, host)
    assert gnu.env["LD_PRELOAD"] == str(find("tcmalloc"))
    assert {k: gnu.env[k] for k in ("OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY")} == {
        "OMP_PROC_BIND": "spread", "OMP_PLACES": "threads", "OMP_WAIT_POLICY": "passive"}
    assert gnu.expect["omp_proc_bind"] == 4 and gnu.expect["omp_num_places"] == 1
    # ONNX Runtime has no openmp key: nothing OpenMP is set or checked.
    ort = P.plan_runtime({**ORT, "threads": 2, "binding": "none", "allocator": "system"}, host)
    assert "openmp" not in ort.expect and "LD_PRELOAD" not in ort.env


def test_pinning_is_expected_only_where_it_can_show(clx):
    intel = {**TORCH, "threads": 4, "binding": "taskset", "openmp": "intel", "kmp_affinity": "scatter"}
    assert P.plan_runtime(intel, clx).expect["pinned_threads"] == 4
    one = P.plan_runtime({**intel, "threads": 1}, clx)
    assert "pinned_threads" not in one.expect  # one CPU: nothing narrower to pin to
    places_only = P.plan_runtime({**TORCH, "threads": 4, "binding": "taskset", "openmp": "gnu", "omp_places": "cores"},
                                 clx)
    assert places_only.expect["omp_proc_bind"] == 1  # libgomp binds once OMP_PLACES is set
    assert places_only.expect["pinned_threads"] == 4 and places_only.expect["omp_num_places"] == 4


def test_missing_library_is_an_error_with_the_reason(monkeypatch):
    monkeypatch.setenv("TUNER_JEMALLOC_LIBRARY", "/nonexistent/libjemalloc.so.2")
    with pytest.raises(MissingLibraryError, match=r"\$TUNER_JEMALLOC_LIBRARY names /nonexistent"):
        P.plan_runtime({**ORT, "threads": 1, "allocator": "jemalloc"}, detect())


def test_environment_replaces_managed_variables():
    plan = P.plan_runtime({**ORT, "threads": 1, "binding": "none"}, detect())
    base = {"PATH": "/bin", "LD_PRELOAD": "/stray.so", "OMP_PROC_BIND": "true", "OMP_NUM_THREADS": "8", "KMP_X": "1"}
    assert plan.environment(base) == {"PATH": "/bin", "OMP_NUM_THREADS": "1", "KMP_X": "1"}
