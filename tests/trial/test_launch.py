"""The launcher against real processes: stand-in workers that crash, hang or answer."""

import os
import sys
import textwrap
import time

from tuner.trial.launch import RuntimePlan, run_worker
from tuner.trial.spec import CRASHED, OK, TIMEOUT, ModelRef, TrialSpec, Workload


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
