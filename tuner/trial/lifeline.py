"""No process of a study outlives its tuner.

Workers and fork servers start in sessions of their own (so a timed-out trial's whole
group can be killed), which also means nothing kills them when the tuner itself is
killed: they would run on at full CPU beside the next study, or forever when stopped.
So every process the study starts asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, set in the child before it execs numactl or taskset and
then Python: it survives exec), and checks its parent is still the one that started
it, which closes the window between fork and prctl. SIGKILL ends a stopped process
too. A worker forked by a fork server asks the same of the server, which asks it of
the tuner.

The machine lock (tuner.search.lock) is an flock, held while any process holds the
open file it was taken on; the study's processes inherit that file (``inherited_fds``),
so the lock stays held until the last of them is gone, and a second study cannot
start measuring beside one that is still dying.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: nothing to ask for
    _prctl = None

# Descriptors every process of the study keeps open (the machine lock's file).
_INHERITED: set[int] = set()


def die_with_parent(parent_pid: int) -> None:
    """In a child: be killed when ``parent_pid`` (the process that started this one)
    dies, or die now if it already has. Async-signal-safe enough for a preexec_fn: one
    foreign call prepared at import, no allocation worth the name."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the prctl: nothing would tell us
        os.kill(os.getpid(), signal.SIGKILL)


def preexec(parent_pid: int | None = None) -> Callable[[], None]:
    """A subprocess ``preexec_fn`` that makes the child die with this process."""
    parent = os.getpid() if parent_pid is None else parent_pid

    def run() -> None:
        die_with_parent(parent)

    return run


def keep_open(fd: int) -> None:
    """Every process the study starts from now on inherits ``fd``."""
    _INHERITED.add(fd)


def forget(fd: int) -> None:
    _INHERITED.discard(fd)


def inherited_fds() -> tuple[int, ...]:
    """The descriptors to pass to a new process of the study (``pass_fds``)."""
    return tuple(sorted(_INHERITED))
