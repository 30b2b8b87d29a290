"""Start trial workers in fresh processes under their binding and environment.

Thread pools, allocators and OpenMP runtimes are fixed when a process starts, so the
knobs a trial tests go into its argv (numactl / taskset) and its environment, never
into the tuner's own process (the plan: tuner.trial.plan). The parent blocks on the
workers' pipes with a deadline (no busy wait) and kills each whole process group
when it passes. Several workers can run at once (a throughput trial's instances);
then each waits at a barrier after its warm-up, so all measure the same window.
A single worker may instead be forked by a fork server started exactly as the
worker would be, with its heavy imports done (tuner.trial.forkserver).
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
from typing import TYPE_CHECKING, Any

from tuner.trial import lifeline
from tuner.trial.plan import RuntimePlan  # noqa: F401  (re-exported: callers import it from here)
from tuner.trial.spec import CRASHED, TIMEOUT, TrialResult, TrialSpec

if TYPE_CHECKING:
    from tuner.trial.forkserver import ForkServers

STDERR_TAIL_CHARS = 4000


def worker_argv(python: str, result_fd: int, ready_fd: int | None = None, go_fd: int | None = None) -> list[str]:
    argv = [python, "-m", "tuner.trial.worker", "--result-fd", str(result_fd)]
    if ready_fd is not None and go_fd is not None:
        argv += ["--ready-fd", str(ready_fd), "--go-fd", str(go_fd)]
    return argv


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class _Running:
    proc: Any  # subprocess.Popen, or a forkserver.RemoteWorker
    result_fd: int
    ready_fd: int | None
    result: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)
    ready: bytearray = field(default_factory=bytearray)
    result_closed: bool = False  # the worker finished writing its result


def run_worker(
    spec: TrialSpec,
    plan: RuntimePlan,
    timeout_s: float,
    python: str | None = None,
    servers: "ForkServers | None" = None,
    preload: list[str] | None = None,
) -> TrialResult:
    """Run one trial in a fresh process group; never raises for a failed trial.
    With ``servers`` and modules to ``preload``, the process is forked by the fork
    server of this exact start (started on first use); a cold start when none can."""
    if not servers or not preload:
        return run_workers([spec], [plan], timeout_s, python)[0]
    missing = _missing_prefix([plan])
    if missing:
        return TrialResult(status=CRASHED, reason=missing)
    python = python or sys.executable
    server = servers.get(python, list(plan.prefix), plan.environment(os.environ), preload)
    running = _fork(server, spec) if server is not None else None
    if running is None:
        running = _start(spec, plan, python, None)
    timed_out = _collect([running], None, timeout_s)[0]
    return _result_of(running, timed_out, timeout_s)


def _fork(server: Any, spec: TrialSpec) -> "_Running | None":
    """The worker forked by ``server``; None when the server cannot (it is closed)."""
    read_fd, write_fd = os.pipe()
    output_read, output_write = os.pipe()
    try:
        proc = server.fork(spec.to_json(), write_fd, output_write)
    except OSError:
        os.close(read_fd)
        os.close(output_read)
        return None
    finally:
        os.close(write_fd)
        os.close(output_write)
    proc.stdout = os.fdopen(output_read, "rb", buffering=0)
    return _Running(proc, read_fd, None)


def run_workers(
    specs: list[TrialSpec],
    plans: list[RuntimePlan],
    timeout_s: float,
    python: str | None = None,
    synchronized: bool = False,
) -> list[TrialResult]:
    """Run one process per (spec, plan), all at once, each in its own process group.

    With ``synchronized`` each worker reports ready after its warm-up and waits; the
    parent releases all together once every one is ready or gone. Never raises for a
    failed trial: each gets a result (crashed, timeout, or what it wrote).
    """
    assert len(specs) == len(plans) and specs
    missing = _missing_prefix(plans)
    if missing:
        return [TrialResult(status=CRASHED, reason=missing) for _ in specs]
    go_read, go_write = os.pipe() if synchronized else (None, None)
    running: list[_Running] = []
    try:
        for spec, plan in zip(specs, plans):
            running.append(_start(spec, plan, python or sys.executable, go_read))
    finally:
        if go_read is not None:
            os.close(go_read)  # the children hold their own copies
    collected = _collect(running, go_write, timeout_s)
    return [_result_of(r, timed_out, timeout_s) for r, timed_out in zip(running, collected)]


def _missing_prefix(plans: list[RuntimePlan]) -> str | None:
    """Why a plan's binding command cannot run (None: every one can)."""
    for plan in plans:
        if plan.prefix and shutil.which(plan.prefix[0]) is None:
            return f"{plan.prefix[0]} is not installed"
    return None


def _start(spec: TrialSpec, plan: RuntimePlan, python: str, go_read: int | None) -> _Running:
    read_fd, write_fd = os.pipe()
    ready_read, ready_write = os.pipe() if go_read is not None else (None, None)
    pass_fds = tuple(fd for fd in (write_fd, ready_write, go_read) if fd is not None) + lifeline.inherited_fds()
    argv = [*plan.prefix, *worker_argv(python, write_fd, ready_write, go_read)]
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
                pass_fds=pass_fds,
                start_new_session=True,  # its own process group, killed as one
                preexec_fn=lifeline.preexec(),  # killed with the tuner too (tuner.trial.lifeline)
                env=plan.environment(os.environ),
            )
        except BaseException:
            for fd in (read_fd, ready_read):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            os.close(write_fd)
            if ready_write is not None:
                os.close(ready_write)
    return _Running(proc, read_fd, ready_read)


def _collect(running: list[_Running], go_write: int | None, timeout_s: float) -> list[bool]:
    """Read every pipe until the workers are done or the deadline passes; release the
    barrier once every ready pipe has answered or closed. Returns timed-out flags."""
    deadline = time.monotonic() + timeout_s
    selector = selectors.DefaultSelector()
    waiting_ready = 0
    for r in running:
        assert r.proc.stdout is not None
        selector.register(r.proc.stdout, selectors.EVENT_READ, (r, "output"))
        selector.register(r.result_fd, selectors.EVENT_READ, (r, "result"))
        if r.ready_fd is not None:
            selector.register(r.ready_fd, selectors.EVENT_READ, (r, "ready"))
            waiting_ready += 1
    timed_out = False
    try:
        while selector.get_map():
            if go_write is not None and waiting_ready == 0:
                os.close(go_write)  # EOF on the go pipe releases every waiting worker at once
                go_write = None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            # Wake at least every second: a grandchild may hold the output pipe open
            # after the worker itself has exited.
            for key, _ in selector.select(min(remaining, 1.0)):
                owner, kind = key.data
                chunk = os.read(key.fd, 65536)
                buffer = getattr(owner, kind)
                if chunk:
                    buffer.extend(chunk)
                    if kind == "output" and len(buffer) > 4 * STDERR_TAIL_CHARS:
                        del buffer[: -2 * STDERR_TAIL_CHARS]
                    if kind == "ready":
                        selector.unregister(key.fileobj)
                        waiting_ready -= 1
                else:
                    selector.unregister(key.fileobj)
                    if kind == "ready":
                        waiting_ready -= 1
                    elif kind == "result":
                        owner.result_closed = True
            registered = {k.fd for k in selector.get_map().values()}
            if all(r.proc.poll() is not None and r.result_fd not in registered for r in running):
                break
    finally:
        selector.close()
        if go_write is not None:
            os.close(go_write)
        for r in running:
            for fd in (r.result_fd, r.ready_fd):
                if fd is not None:
                    os.close(fd)
            assert r.proc.stdout is not None
            r.proc.stdout.close()
            _kill_group(r.proc)
        for r in running:
            try:
                r.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    return [timed_out and not r.result_closed for r in running]


def _result_of(r: _Running, timed_out: bool, timeout_s: float) -> TrialResult:
    tail = bytes(r.output[-STDERR_TAIL_CHARS:]).decode(errors="replace")
    if timed_out:
        return TrialResult(status=TIMEOUT, reason=f"no result within {timeout_s:.0f} s", stderr_tail=tail)
    if r.result:
        try:
            result = TrialResult.from_json(bytes(r.result).decode())
        except (ValueError, TypeError) as exc:
            return TrialResult(status=CRASHED, reason=f"unreadable result: {exc}", stderr_tail=tail)
        result.stderr_tail = tail
        return result
    code = r.proc.returncode
    if code is not None and code < 0:
        name = _signal_name(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        reason = f"killed by {name}{hint}"
    else:
        reason = f"exited with code {code} without a result"
    return TrialResult(status=CRASHED, reason=reason, stderr_tail=tail)


def _kill_group(proc: Any) -> None:
    """Kill the worker's whole group: a timed-out trial, or strays left behind."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
