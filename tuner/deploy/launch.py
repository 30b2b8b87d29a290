"""Run a command under the stored winner's binding, preloads and variables.

One instance: the process replaces itself (exec) with ``[numactl|taskset ...] CMD``,
so signals, exit code and PID are the command's own, as under a process manager.
A throughput winner of N instances: either one slice (``instance``), for a process
manager that starts each (a systemd template unit), or all N as children, with
SIGINT/SIGTERM passed on and the first failure's exit code returned.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping

from tuner.deploy.lookup import BestConfig
from tuner.errors import UserError


def environment(base: Mapping[str, str], env: dict[str, str], unset: list[str]) -> dict[str, str]:
    """``base`` without the variables the winner leaves unset, plus the winner's."""
    out = {k: v for k, v in base.items() if k not in unset}
    out.update(env)
    return out


def describe(best: BestConfig, instance: int | None = None) -> list[str]:
    """What ``launch`` applies, one item per line (``--verbose``)."""
    from tuner.vocabulary import describe_config

    slots = best.instances or [(best.prefix, best.env)]
    chosen = range(len(slots)) if instance is None else [instance]
    lines = [f"winner for seq {best.seq_len}, batch {best.batch} ({best.objective}): {describe_config(best.config)}"]
    if best.python:
        lines.append(f"interpreter: {best.python} (the backend's own environment)")
    for i in chosen:
        prefix, env = slots[i]
        head = f"instance {i + 1}/{len(slots)} " if len(slots) > 1 else ""
        lines.append(f"{head}binding: {' '.join(prefix) if prefix else 'none'}")
        lines += [f"{head}{k}={v}" for k, v in env.items() if k != "TUNER_CONFIG"]
    if best.unset:
        lines.append("unset: " + " ".join(best.unset))
    lines += [f"note: {n}" for n in best.notes]
    return lines


def _check_command(command: list[str]) -> None:
    if not command:
        raise UserError("no command to launch; put it after --, e.g. tuner launch --model M -- python server.py")
    if os.sep not in command[0] and shutil.which(command[0]) is None:
        raise UserError(f"command not found: {command[0]} (not on PATH)")


# Commands that name "a Python": the winner's own environment's interpreter replaces them.
_PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")


def with_interpreter(best: BestConfig, command: list[str]) -> list[str]:
    """``command`` with ``python`` (or python3, or this tuner's interpreter) replaced by
    the interpreter of the winner's environment, for a backend that lives in one (IPEX,
    ONNX Runtime's OpenVINO provider). Any other command is refused: it could not load
    the winner."""
    from tuner.envs import env_for_backend

    backend = best.config.get("backend")
    if not isinstance(backend, str) or env_for_backend(backend) is None:
        return command
    if best.python is None:
        raise UserError(f"the winner runs on {backend}, whose environment is not ready: {'; '.join(best.notes)}")
    if command[0] in _PYTHONS or os.path.realpath(shutil.which(command[0]) or command[0]) == os.path.realpath(
        sys.executable
    ):
        return [best.python, *command[1:]]
    raise UserError(
        f"the winner runs on {backend}, which needs the interpreter of its own environment ({best.python}); "
        f"start your program with python (tuner launch replaces it), e.g. `tuner launch --model {best.model} "
        f"--seq-len {best.seq_len} -- python -m uvicorn server:app`"
    )


def launch(best: BestConfig, command: list[str], instance: int | None = None, verbose: bool = False) -> int:
    """Exec ``command`` under ``best`` (never returns), or for several instances run
    them and return the exit code."""
    _check_command(command)
    command = with_interpreter(best, command)
    slots = best.instances or [(best.prefix, best.env)]
    if instance is not None and not 0 <= instance < len(slots):
        raise UserError(
            f"--instance {instance}: the winner runs {len(slots)} instance(s), numbered 0..{len(slots) - 1}"
        )
    if verbose:
        for line in describe(best, instance if len(slots) > 1 else None):
            print(f"tuner launch: {line}", file=sys.stderr)
        sys.stderr.flush()
    if len(slots) == 1 or instance is not None:
        prefix, env = slots[instance or 0]
        argv = [*prefix, *command]
        sys.stdout.flush()
        try:
            os.execvpe(argv[0], argv, environment(os.environ, env, best.unset))
        except OSError as exc:
            raise UserError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return _run_all(slots, command, best.unset)


def _run_all(slots: list[tuple[list[str], dict[str, str]]], command: list[str], unset: list[str]) -> int:
    children = [subprocess.Popen([*prefix, *command], env=environment(os.environ, env, unset)) for prefix, env in slots]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [c for c in codes if c != 0]
    if not failed:
        return 0
    return failed[0] if failed[0] > 0 else 128 - failed[0]
