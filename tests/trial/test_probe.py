import os
import subprocess
import sys

from tuner.trial.probe import differences, mapped_libraries, probe

MAPS = """\
7f1c2a000000-7f1c2a021000 r--p 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
7f1c2b000000-7f1c2b021000 r-xp 00000000 fd:01 124 /venv/lib/python3.11/site-packages/torch/lib/libgomp-a34b3233.so.1
7f1c2c000000-7f1c2c021000 r-xp 00000000 fd:01 125 /usr/lib/libc.so.6
7f1c2d000000-7f1c2d021000 rw-p 00000000 00:00 0
"""


def test_mapped_libraries_finds_tracked_runtimes():
    libs = mapped_libraries(MAPS)
    assert set(libs) == {"jemalloc", "gomp"}
    assert libs["jemalloc"].endswith("libjemalloc.so.2")


def test_probe_reads_this_process():
    result = probe()
    assert result["cpus"] == sorted(os.sched_getaffinity(0))
    assert result["mems_allowed"]  # e.g. "0"


def test_probe_sees_taskset_and_preloaded_jemalloc():
    jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    code = "import json; from tuner.trial.probe import probe; print(json.dumps(probe()))"
    env = {**os.environ, "LD_PRELOAD": jemalloc, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, check=True).stdout
    import json

    seen = json.loads(out)
    assert seen["cpus"] == [0]
    assert "jemalloc" in seen["libraries"]
    assert seen["env"]["OMP_NUM_THREADS"] == "1"


def test_differences_name_each_mismatch():
    assert differences({"cpus": [0], "threads": 1}, {"cpus": [0], "threads": 1}) == []
    problems = differences({"cpus": [0], "threads": 2}, {"cpus": [0, 1], "threads": 1})
    assert len(problems) == 2
    assert "CPUs [0]" in problems[0]
    assert differences({"cpus": None, "threads": None}, {"cpus": [0, 1]}) == []
