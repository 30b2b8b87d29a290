"""Preloaded fork servers: trial workers that start with their imports done.

A torch-family trial spends most of its fixed cost importing torch and transformers
(about 10 s on a 2-vCPU VM, against well under a second for the model itself), the
same imports in every trial. A fork server is a process started exactly as a worker
would be (the same interpreter, numactl/taskset prefix and environment: preloaded
allocator and OpenMP runtime, OMP/KMP/MALLOC variables), which does those imports
once and then forks one child per trial. The child is a fresh process of its own
(own address space, own session, its own model load, warm-up and measurement) that
runs the ordinary worker; what it saves is only the imports. Everything a trial's
knobs decide at process start is decided by the server's start, which is why one
server serves only trials whose start is identical (ForkServers keys them by it).

    python -m tuner.trial.forkserver SOCKET_FD MODULE...

Protocol over the Unix socket (SOCKET_FD): the client sends one JSON request with
the trial's result and output pipes attached (SCM_RIGHTS), the server answers
{"pid": N}, and once that child has exited {"exit": waitpid status}. The server
serves one trial at a time and exits when the client closes the socket.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.trial import lifeline

# Servers kept alive at once (each holds torch and transformers, ~0.5 GB here).
MAX_SERVERS = 2
# A server whose imports take longer than this is given up (its trials start cold).
READY_TIMEOUT_S = 300.0
_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def _read_exact(sock: socket.socket, size: int, data: bytes = b"") -> bytes | None:
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _receive(sock: socket.socket, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (None: the other side closed) and the descriptors sent with it.
    Reads exactly one message, never into the next (a pid and an exit can arrive
    back to back)."""
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, with_fds)
    else:
        head = sock.recv(_HEADER.size)
    full = _read_exact(sock, _HEADER.size, head) if head else None
    body = _read_exact(sock, _HEADER.unpack(full)[0]) if full else None
    return (json.loads(body) if body is not None else None), fds


# -- the server ----------------------------------------------------------------------


def preload(modules: list[str]) -> None:
    """Import what the trials will import. A module that fails to import is left to
    the trial, which reports it as its own error."""
    for name in modules:
        try:
            if name.startswith("model:"):
                _preload_model_class(name[len("model:") :])
            else:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optimisation only; the trial will say what is wrong
            pass


def _preload_model_class(path: str) -> None:
    """transformers imports a model's class lazily, by its config's model_type: the
    bulk of `from transformers import BertModel`."""
    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    import transformers
    from transformers.models.auto import modeling_auto

    for mapping in (modeling_auto.MODEL_MAPPING_NAMES, modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES):
        if model_type in mapping:
            names = mapping[model_type]  # a class name, or several for some model types
            for name in [names] if isinstance(names, str) else names:
                getattr(transformers, name)


def _child(request: dict[str, Any], result_fd: int, output_fd: int, sock: socket.socket, server: int) -> None:
    """In the forked child: become a worker process of its own and run the worker."""
    import io

    sock.close()
    os.setsid()  # its own process group, killed as one (as a cold worker's)
    lifeline.die_with_parent(server)  # and killed with its server, which dies with the tuner
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = io.StringIO(request["spec"])
    code = 1
    try:
        from tuner.trial import worker

        code = worker.main(["--result-fd", str(result_fd), "--forked"])
    except BaseException:  # noqa: BLE001 - the parent reads the traceback from the output pipe
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket, modules: list[str]) -> int:
    from tuner.trial.probe import remember_start

    remember_start()  # the binding's CPU mask, before an OpenMP runtime can narrow it
    preload(modules)
    _send(sock, {"ready": True})
    while True:
        request, fds = _receive(sock, with_fds=2)
        if request is None:
            return 0
        result_fd, output_fd = fds
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(request, result_fd, output_fd, sock, server)
        os.close(result_fd)
        os.close(output_fd)
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"exit": status})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    try:
        return serve(sock, args[1:])
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the tuner went away


# -- the client ----------------------------------------------------------------------


class RemoteWorker:
    """A worker forked by a server, with the part of subprocess.Popen that
    tuner.trial.launch uses (pid, stdout, poll, wait, returncode)."""

    def __init__(self, server: "ForkServer", pid: int, stdout: Any) -> None:
        self.server = server
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_exit(timeout=0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read_exit(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0.0)
        return self.returncode

    def _read_exit(self, timeout: float | None) -> None:
        import select

        if not self.server.alive():
            self.returncode = -9
            return
        if timeout is not None and not select.select([self.server.sock], [], [], timeout)[0]:
            return
        message, _ = _receive(self.server.sock)
        if message is None or "exit" not in message:
            self.server.close()
            self.returncode = -9
            return
        status = message["exit"]
        self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@dataclass
class ForkServer:
    key: tuple
    proc: subprocess.Popen
    sock: socket.socket

    def alive(self) -> bool:
        return self.proc.poll() is None and self.sock.fileno() >= 0

    def fork(self, spec_json: str, result_fd: int, output_fd: int) -> RemoteWorker:
        """Ask for one worker; the caller keeps the read ends of the pipes."""
        _send(self.sock, {"spec": spec_json}, [result_fd, output_fd])
        message, _ = _receive(self.sock)
        if message is None or "pid" not in message:
            self.close()
            raise OSError("the fork server went away")
        return RemoteWorker(self, int(message["pid"]), None)

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ForkServers:
    """The live servers of one tuning run, by how their processes start; at most
    MAX_SERVERS, the least recently used closed first. ``started`` and ``reused``
    count what the servers did (the study reports them)."""

    def __init__(self, limit: int = MAX_SERVERS) -> None:
        self.limit = limit
        self._servers: dict[tuple, ForkServer] = {}
        self.started = 0
        self.reused = 0

    def get(self, python: str, prefix: list[str], env: dict[str, str], modules: list[str]) -> ForkServer | None:
        """The server for this start (started on first use; None if it cannot start)."""
        key = (python, tuple(prefix), tuple(sorted(env.items())), tuple(modules))
        server = self._servers.pop(key, None)
        if server is not None and server.alive():
            self._servers[key] = server  # most recently used last
            self.reused += 1
            return server
        while len(self._servers) >= self.limit:
            oldest = next(iter(self._servers))
            self._servers.pop(oldest).close()
        server = _start_server(key, python, prefix, env, modules)
        if server is not None:
            self._servers[key] = server
            self.started += 1
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()


def _start_server(
    key: tuple, python: str, prefix: list[str], env: dict[str, str], modules: list[str]
) -> ForkServer | None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [*prefix, python, "-m", "tuner.trial.forkserver", str(theirs.fileno()), *modules],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(), *lifeline.inherited_fds()),
            start_new_session=True,
            env=env,
            preexec_fn=lifeline.preexec(),  # killed with the tuner (tuner.trial.lifeline)
        )
    except OSError:
        ours.close()
        return None
    finally:
        theirs.close()
    ours.settimeout(READY_TIMEOUT_S)
    try:
        message, _ = _receive(ours)
    except OSError:  # socket.timeout included: imports that hang
        message = None
    ours.settimeout(None)
    if message is None or not message.get("ready"):
        proc.kill()
        ours.close()
        proc.wait()
        return None
    return ForkServer(key, proc, ours)


if __name__ == "__main__":
    sys.exit(main())
