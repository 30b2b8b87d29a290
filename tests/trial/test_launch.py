"""The launcher against real processes: stand-in workers that crash, hang or answer."""

import sys
import textwrap
import time

from tuner.trial.launch import RuntimePlan, run_worker
from tuner.model import ModelRef
from tuner.trial.spec import CRASHED, OK, TIMEOUT, TrialSpec, Workload


def make_spec() -> TrialSpec:
    model = ModelRef(model_id="m", path="/nonexistent", content_hash="0" * 64, task="embedding")
    return TrialSpec(model=model, workload=Workload(16), config={"backend": "torch"}, cache_dir="/tmp", eval_texts=["a"])


def stand_in(tmp_path, body: str) -> str:
    """An executable that takes the worker's argv (-m tuner.trial.worker --result-fd N)."""
    script = tmp_path / "fake_python"
    script.write_text("#!" + sys.executable + "\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_result_comes_from_the_pipe_not_stdout(tmp_path):
    python = stand_in(tmp_path, """
        import os, sys, json
        fd = int(sys.argv[-1])
        spec = json.loads(sys.stdin.read())
        print("libraries print to stdout")
        print("and to stderr", file=sys.stderr)
        os.write(fd, json.dumps({"status": "ok", "stats": {"median": 1.5}, "reason": spec["config"]["backend"]}).encode())
    """)
    result = run_worker(make_spec(), RuntimePlan(), timeout_s=30, python=python)
    assert result.status == OK
    assert result.stats["median"] == 1.5
    assert result.reason == "torch"  # the spec arrived on stdin
    assert "libraries print to stdout" in result.stderr_tail
    assert "and to stderr" in result.stderr_tail


def test_crash_by_signal_is_reported_with_output_tail(tmp_path):
    python = stand_in(tmp_path, """
        import os, signal
        print("about to crash", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    """)
    result = run_worker(make_spec(), RuntimePlan(), timeout_s=30, python=python)
    assert result.status == CRASHED
    assert "SIGSEGV" in result.reason
    assert "about to crash" in result.stderr_tail


def test_exit_without_result(tmp_path):
    python = stand_in(tmp_path, "import sys; sys.exit(3)\n")
    result = run_worker(make_spec(), RuntimePlan(), timeout_s=30, python=python)
    assert result.status == CRASHED
    assert "code 3" in result.reason


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    python = stand_in(tmp_path, f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(300)
    """)
    start = time.monotonic()
    result = run_worker(make_spec(), RuntimePlan(), timeout_s=2, python=python)
    assert result.status == TIMEOUT
    assert time.monotonic() - start < 20
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]


def test_binding_prefix_is_applied(tmp_path):
    python = stand_in(tmp_path, """
        import os, sys, json
        os.write(int(sys.argv[-1]), json.dumps({"status": "ok", "effective": {"cpus": sorted(os.sched_getaffinity(0))},
                 "reason": os.environ.get("OMP_NUM_THREADS")}).encode())
    """)
    plan = RuntimePlan(prefix=["taskset", "-c", "0"], env={"OMP_NUM_THREADS": "1"}, cpus=[0])
    result = run_worker(make_spec(), plan, timeout_s=30, python=python)
    assert result.effective["cpus"] == [0]
    assert result.reason == "1"


def test_missing_binding_tool_is_a_failed_trial(tmp_path):
    plan = RuntimePlan(prefix=["no-such-binder-tool", "-x"], cpus=[0])
    result = run_worker(make_spec(), plan, timeout_s=30, python=sys.executable)
    assert result.status == CRASHED
    assert "not installed" in result.reason


def test_managed_variables_do_not_leak_into_a_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "")  # empty: harmless here, but it must not reach the trial
    monkeypatch.setenv("OMP_PROC_BIND", "spread")
    python = stand_in(tmp_path, """
        import os, sys, json
        seen = {k: os.environ.get(k) for k in ("LD_PRELOAD", "OMP_PROC_BIND", "OMP_NUM_THREADS")}
        os.write(int(sys.argv[-1]), json.dumps({"status": "ok", "effective": {"env": seen}}).encode())
    """)
    result = run_worker(make_spec(), RuntimePlan(env={"OMP_NUM_THREADS": "2"}), timeout_s=30, python=python)
    assert result.effective["env"] == {"LD_PRELOAD": None, "OMP_PROC_BIND": None, "OMP_NUM_THREADS": "2"}


BARRIER_WORKER = """
    import json, os, sys, time
    args = sys.argv
    result_fd = int(args[args.index("--result-fd") + 1])
    ready_fd, go_fd = int(args[args.index("--ready-fd") + 1]), int(args[args.index("--go-fd") + 1])
    spec = json.loads(sys.stdin.read())
    time.sleep(1.5 if spec["instance"] == 1 else 0.0)  # instance 1 warms up slowly
    ready_at = time.time()
    os.write(ready_fd, b"r"); os.close(ready_fd)
    os.read(go_fd, 1)
    go_at = time.time()
    os.write(result_fd, json.dumps({"status": "ok", "timings": {"ready": ready_at, "go": go_at}}).encode())
"""


def test_synchronized_instances_start_measuring_together(tmp_path):
    from dataclasses import replace

    from tuner.trial.launch import run_workers

    python = stand_in(tmp_path, BARRIER_WORKER)
    specs = [replace(make_spec(), instance=i, instances=2) for i in range(2)]
    results = run_workers(specs, [RuntimePlan(), RuntimePlan()], timeout_s=30, python=python, synchronized=True)
    assert [r.status for r in results] == [OK, OK]
    fast, slow = (r.timings for r in results)
    # The fast instance waited at the barrier until the slow one was ready.
    assert fast["go"] >= slow["ready"] - 0.05
    assert fast["go"] - fast["ready"] > 1.0
    assert abs(fast["go"] - slow["go"]) < 0.5


def test_an_instance_dying_before_the_barrier_releases_the_others(tmp_path):
    from dataclasses import replace

    from tuner.trial.launch import run_workers

    python = stand_in(tmp_path, BARRIER_WORKER.replace(
        'time.sleep(1.5 if spec["instance"] == 1 else 0.0)', 'sys.exit(5) if spec["instance"] == 1 else None'))
    specs = [replace(make_spec(), instance=i, instances=2) for i in range(2)]
    start = time.monotonic()
    results = run_workers(specs, [RuntimePlan(), RuntimePlan()], timeout_s=30, python=python, synchronized=True)
    assert time.monotonic() - start < 20
    assert results[0].status == OK
    assert results[1].status == CRASHED and "code 5" in results[1].reason
