"""The probe against real processes: taskset, numactl, preloaded jemalloc/tcmalloc,
Intel and GNU OpenMP under torch, and the differences it reports in words."""

import json
import os
import subprocess
import sys

import pytest

from tuner.hardware.libraries import find
from tuner.trial.probe import differences, mapped_libraries, probe, summary

MAPS = """\
7f1c2a000000-7f1c2a021000 r--p 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
7f1c2b000000-7f1c2b021000 r-xp 00000000 fd:01 124 /venv/lib/python3.11/site-packages/torch/lib/libgomp-a34b3233.so.1
7f1c2c000000-7f1c2c021000 r-xp 00000000 fd:01 125 /usr/lib/libc.so.6
7f1c2d000000-7f1c2d021000 rw-p 00000000 00:00 0
"""
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
CLEAN = {k: v for k, v in os.environ.items()
         if not k.startswith(("OMP_", "KMP_", "LD_PRELOAD", "MALLOC_CONF", "GOMP_"))}


def probe_in(prefix: list[str], env: dict[str, str], body: str = "") -> dict:
    """Run a fresh Python under ``prefix`` and ``env``, run ``body``, then probe it."""
    code = ("import json\nfrom tuner.trial.probe import probe, remember_start\nremember_start()\n"
            + body + "\nresult = probe()\nprint('PROBE' + json.dumps(result))")
    proc = subprocess.run([*prefix, sys.executable, "-c", code], env={**CLEAN, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


TORCH_2_THREADS = """
import torch
torch.set_num_threads(2)
x = torch.randn(256, 256)
for _ in range(20):
    x @ x
"""


def test_mapped_libraries_finds_tracked_runtimes():
    libs = mapped_libraries(MAPS)
    assert set(libs) == {"jemalloc", "gomp"}
    assert libs["jemalloc"].endswith("libjemalloc.so.2")


def test_probe_reads_this_process():
    result = probe()
    assert result["cpus"] == sorted(os.sched_getaffinity(0))
    assert result["mems_allowed"]  # e.g. "0"
    assert result["malloc"]["kind"] == "system"  # pytest runs without a preload
    assert result["mempolicy"] == "default"


def test_taskset_and_preloaded_jemalloc_with_malloc_conf():
    jemalloc = str(find("jemalloc"))
    seen = probe_in(["taskset", "-c", "0"], {
        "LD_PRELOAD": jemalloc, "OMP_NUM_THREADS": "1",
        "MALLOC_CONF": "background_thread:true,metadata_thp:auto,dirty_decay_ms:-1",
    })
    assert seen["cpus"] == [0]
    assert "jemalloc" in seen["libraries"]
    assert seen["malloc"] == {"kind": "jemalloc", "library": os.path.realpath(jemalloc)}
    # Read back from jemalloc itself, not from the environment.
    assert seen["jemalloc"]["background_thread"] is True
    assert seen["jemalloc"]["metadata_thp"] == "auto"
    assert seen["jemalloc"]["dirty_decay_ms"] == -1
    assert seen["env"]["OMP_NUM_THREADS"] == "1"


def test_tcmalloc_owns_malloc():
    seen = probe_in([], {"LD_PRELOAD": str(find("tcmalloc"))})
    assert seen["malloc"]["kind"] == "tcmalloc"


def test_numactl_memory_policies_are_read_back():
    from tuner.trial.plan import numactl_refusal

    refused = numactl_refusal(["--physcpubind=0", "--membind=0"])
    if refused:
        pytest.skip(f"numactl is refused on this machine ({refused}); tests/trial/test_plan.py covers the fallback")
    assert probe_in(["numactl", "--physcpubind=0", "--membind=0"], {})["mempolicy"] == "bind:0"
    local = probe_in(["numactl", "--physcpubind=0", "--localalloc"], {})
    assert local["mempolicy"] == "local" and local["cpus"] == [0]


def test_missing_preload_runs_without_it_and_the_difference_says_so():
    seen = probe_in([], {"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"})
    assert seen["malloc"]["kind"] == "system"
    problems = differences({"malloc": "jemalloc"}, seen)
    assert len(problems) == 1 and "asked for the jemalloc allocator, malloc comes from" in problems[0]
    assert "libc" in problems[0]


@pytest.mark.skipif(not TWO_CPUS, reason="KMP_AFFINITY pinning needs two CPUs to show")
def test_intel_openmp_under_torch_pins_threads_and_reports_blocktime():
    seen = probe_in([], {
        "LD_PRELOAD": str(find("iomp5")), "KMP_AFFINITY": "granularity=fine,compact,1,0", "KMP_BLOCKTIME": "1",
        "OMP_NUM_THREADS": "2",
    }, TORCH_2_THREADS)
    assert seen["openmp"]["runtime"] == "intel"
    assert seen["openmp"]["blocktime"] == 1
    assert seen["openmp"]["max_threads"] == 2
    # torch's own libgomp is still mapped, but its OpenMP calls go to libiomp5.
    assert "gomp" in seen["libraries"] and "iomp5" in seen["libraries"]
    assert seen["pinned_threads"] >= 2
    # The known trap: the main thread itself is pinned to one CPU now; the start mask is kept.
    assert len(seen["main_thread_cpus"]) == 1 and seen["cpus"] == sorted(os.sched_getaffinity(0))
    assert differences({"openmp": "intel", "kmp_blocktime": 1, "pinned_threads": 2}, seen) == []
    assert differences({"openmp": "intel", "kmp_blocktime": 0}, seen) == [
        "kmp_blocktime: asked for 0, the OpenMP runtime reports 1"]


def test_gnu_openmp_settings_are_read_from_libgomp():
    seen = probe_in([], {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}, TORCH_2_THREADS)
    assert seen["openmp"]["runtime"] == "gnu"
    assert seen["openmp"]["proc_bind"] == 3  # omp_proc_bind_close
    assert seen["openmp"]["num_places"] >= 1
    unbound = probe_in([], {}, TORCH_2_THREADS)
    assert unbound["openmp"]["proc_bind"] == 0 and unbound["pinned_threads"] == 0
    assert differences({"openmp": "gnu", "omp_proc_bind": 3}, unbound) == [
        "omp_proc_bind: asked for 3, the OpenMP runtime reports 0"]
    assert differences({"openmp": "intel"}, unbound)[0].startswith("asked for the intel OpenMP runtime, OpenMP calls go to")


def test_differences_name_each_mismatch():
    effective = {"cpus": [0, 1], "threads": 1, "mempolicy": "default", "malloc": {"kind": "system", "library": "libc"},
                 "openmp": {"runtime": None}, "pinned_threads": 0, "env": {"OMP_NUM_THREADS": "1"}}
    assert differences({"cpus": [0, 1], "threads": 1}, effective) == []
    problems = differences({"cpus": [0], "threads": 2, "mempolicy": "bind:0", "malloc": "tcmalloc",
                            "openmp": "gnu", "pinned_threads": 2, "env": {"OMP_NUM_THREADS": "2"}}, effective)
    assert problems == [
        "asked for CPUs 0, the process got 0-1",
        "asked for 2 threads, the framework uses 1",
        "asked for memory policy bind:0, the process has default",
        "asked for the tcmalloc allocator, malloc comes from libc",
        "asked for the gnu OpenMP runtime, OpenMP calls go to no OpenMP runtime is loaded",
        "asked for 2 OpenMP threads pinned to their own CPUs, 0 are (thread masks None)",
        "OMP_NUM_THREADS: asked for '2', the process saw '1'",
    ]
    jemalloc = {**effective, "malloc": {"kind": "jemalloc"}, "jemalloc": {"background_thread": False}}
    assert differences({"malloc": "jemalloc", "jemalloc": {"background_thread": True}}, jemalloc) == [
        "MALLOC_CONF did not take: jemalloc reports opt.background_thread=False, expected True"]
    assert differences({"cpus": None, "threads": None}, {"cpus": [0, 1]}) == []


def test_summary_is_a_few_lines():
    lines = summary(probe())
    assert lines[0].startswith("cpus ") and any(line.startswith("malloc: system") for line in lines)


def test_malloc_of_a_statically_linked_interpreter_counts_as_the_system_allocator() -> None:
    import os

    from tuner.trial.probe import _kind_of

    # Seen on a CUDA image whose python3.12 resolves malloc inside its own executable.
    assert _kind_of(os.path.realpath("/proc/self/exe")) == "system"
    assert _kind_of("/usr/lib/x86_64-linux-gnu/libc.so.6") == "system"
    assert _kind_of("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2") == "jemalloc"
    assert _kind_of("/opt/other/libmimalloc.so").startswith("other")
