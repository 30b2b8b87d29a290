"""Start a trial worker in a fresh process under its binding and environment.

Thread pools, allocators and OpenMP runtimes are fixed when a process starts, so the
knobs a trial tests go into its argv (numactl / taskset) and its environment, never
into the tuner's own process. The parent blocks on the worker's pipes with a
deadline (no busy wait) and kills the whole process group when it passes.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from tuner.trial.spec import CRASHED, TIMEOUT, TrialResult, TrialSpec

STDERR_TAIL_CHARS = 4000


@dataclass(frozen=True)
class RuntimePlan:
    """How to start a process for a config: command prefix, environment, CPU set."""

    prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cpus: list[int] | None = None  # None: not bound
    notes: list[str] = field(default_factory=list)


def _cpu_list(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def plan_runtime(config: dict, machine) -> RuntimePlan:
    """The prefix and environment that apply ``config``'s runtime knobs on ``machine``.

    Shared by trials and deployment (``tuner best --format shell``, ``tuner launch``),
    so what is measured is what is deployed.
    """
    threads = int(config.get("threads") or machine.physical_cores_available)
    env = {"OMP_NUM_THREADS": str(threads)}
    binding = config.get("binding", "none")
    if binding == "none":
        return RuntimePlan(env=env)
    cpus = machine.topology.cpus_for(threads, allowed=set(machine.available_cpus))
    if binding == "taskset":
        return RuntimePlan(prefix=["taskset", "-c", _cpu_list(cpus)], env=env, cpus=cpus)
    if binding == "numactl":
        nodes = sorted({n for n, node_cpus in machine.topology.numa_nodes.items() if set(cpus) & set(node_cpus)})
        membind = f"--membind={_cpu_list(nodes)}" if nodes else "--localalloc"
        return RuntimePlan(prefix=["numactl", f"--physcpubind={_cpu_list(cpus)}", membind], env=env, cpus=cpus)
    raise ValueError(f"unknown binding {binding!r}")


def worker_argv(python: str, result_fd: int) -> list[str]:
    return [python, "-m", "tuner.trial.worker", "--result-fd", str(result_fd)]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_worker(
    spec: TrialSpec,
    plan: RuntimePlan,
    timeout_s: float,
    python: str | None = None,
) -> TrialResult:
    """Run one trial in a fresh process group; never raises for a failed trial."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, **plan.env}
    argv = [*plan.prefix, *worker_argv(python or sys.executable, write_fd)]
    if plan.prefix and shutil.which(plan.prefix[0]) is None:
        os.close(read_fd)
        os.close(write_fd)
        return TrialResult(status=CRASHED, reason=f"{plan.prefix[0]} is not installed")
    # The spec goes in through a file as stdin, so a large spec can never block us.
    with tempfile.TemporaryFile() as spec_file:
        spec_file.write(spec.to_json().encode())
        spec_file.seek(0)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=spec_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,  # its own process group, killed as one
                env=env,
            )
        finally:
            os.close(write_fd)
    result_bytes, output, timed_out = _collect(proc, read_fd, timeout_s)
    tail = output[-STDERR_TAIL_CHARS:].decode(errors="replace")
    if timed_out:
        return TrialResult(status=TIMEOUT, reason=f"no result within {timeout_s:.0f} s", stderr_tail=tail)
    if result_bytes:
        try:
            result = TrialResult.from_json(result_bytes.decode())
        except (ValueError, TypeError) as exc:
            return TrialResult(status=CRASHED, reason=f"unreadable result: {exc}", stderr_tail=tail)
        result.stderr_tail = tail
        return result
    code = proc.returncode
    if code is not None and code < 0:
        name = _signal_name(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        reason = f"killed by {name}{hint}"
    else:
        reason = f"exited with code {code} without a result"
    return TrialResult(status=CRASHED, reason=reason, stderr_tail=tail)


def _collect(proc: subprocess.Popen, read_fd: int, timeout_s: float) -> tuple[bytes, bytes, bool]:
    """Read the result pipe and the output until both close or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    result = bytearray()
    output = bytearray()
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None
    selector.register(proc.stdout, selectors.EVENT_READ, output)
    selector.register(read_fd, selectors.EVENT_READ, result)
    timed_out = False
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            # Wake at least every second: a grandchild may hold the output pipe open
            # after the worker itself has exited.
            for key, _ in selector.select(min(remaining, 1.0)):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.extend(chunk)
                    if key.data is output and len(output) > 4 * STDERR_TAIL_CHARS:
                        del output[: -2 * STDERR_TAIL_CHARS]
                else:
                    selector.unregister(key.fileobj)
            if proc.poll() is not None and read_fd not in _fds(selector):
                break
    finally:
        selector.close()
        os.close(read_fd)
        proc.stdout.close()
        _kill_group(proc)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    return bytes(result), bytes(output), timed_out


def _fds(selector: selectors.BaseSelector) -> set[int]:
    return {key.fd for key in selector.get_map().values()}


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker's whole group: a timed-out trial, or strays left behind."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
