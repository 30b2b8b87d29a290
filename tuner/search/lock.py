"""One machine, one study at a time.

Concurrent trials on the same cores corrupt each other's timings, so a second
``tuner auto`` refuses (or, with --wait, waits) while one runs. The lock is an
fcntl lock on a machine-wide file: the kernel drops it when its holder dies, so a
killed run never leaves a stale lock behind.

The holder is the whole study, not only the tuner's process: every worker and fork
server it starts inherits the locked file (tuner.trial.lifeline), and an flock is
held while any process holds the open file it was taken on. So the lock stays held
until the last process of the study is gone. Those processes die with the tuner
(parent-death signal); should one survive anyway, the next run finds the lock held by
processes whose tuner is dead, stops them, says so, and takes the lock.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from tuner.errors import LockedError
from tuner.trial import lifeline

# How long a run waits for the processes it stopped to let go of the lock.
REAP_WAIT_S = 10.0


def default_lock_path() -> Path:
    return Path(os.environ.get("TUNER_LOCK_FILE", "/tmp/tuner-machine.lock"))


class MachineLock:
    def __init__(self, path: Path | None = None, wait: bool = False, what: str = "tuner auto") -> None:
        self.path = path or default_lock_path()
        self.wait = wait
        self.what = what
        self._file: TextIO | None = None

    def __enter__(self) -> MachineLock:
        file = open(self.path, "a+")  # held until __exit__
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._reap_orphans(file):
                holder = self._holder()
                if not self.wait:
                    file.close()
                    raise LockedError(
                        f"another tuning run holds this machine ({holder}); wait for it to finish or pass --wait"
                    ) from None
                print(f"waiting for another tuning run to finish ({holder})", file=sys.stderr)
                fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()}, {self.what}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        self._file = file
        lifeline.keep_open(file.fileno())  # the study's processes hold the lock with it
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def _reap_orphans(self, file: TextIO) -> bool:
        """When the run that took the lock is dead and what holds it now are processes it
        left behind, stop them and take the lock; False when a live run holds it."""
        holders = lock_holders(self.path)
        owner = _recorded_pid(self._holder())
        if not holders or (owner is not None and owner in holders and _alive(owner)):
            return False
        for pid in holders:
            _kill_group(pid)
        print(
            f"tuner: stopped {len(holders)} process{'es' if len(holders) > 1 else ''} left running by an earlier "
            f"tuning run that still held this machine ({self._holder()}): pid {', '.join(map(str, holders))}",
            file=sys.stderr,
        )
        deadline = time.monotonic() + REAP_WAIT_S
        while time.monotonic() < deadline:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                time.sleep(0.1)
        return False

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            lifeline.forget(self._file.fileno())
            # Closed, not unlocked: a process of the study that is still dying keeps the
            # lock until it is gone (LOCK_UN would free it for every holder at once).
            self._file.close()
            self._file = None


def lock_holders(path: Path) -> list[int]:
    """The processes that hold the flock on ``path`` (read from /proc: each open file
    of theirs on it whose fdinfo lists the lock), those of this user or all for root."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        fds = f"/proc/{entry}/fd"
        try:
            names = os.listdir(fds)
        except OSError:
            continue
        for fd in names:
            try:
                st = os.stat(f"{fds}/{fd}")
                if (st.st_ino, st.st_dev) != (target.st_ino, target.st_dev):
                    continue
                with open(f"/proc/{entry}/fdinfo/{fd}") as info:
                    if any(line.startswith("lock:") and "FLOCK" in line for line in info):
                        found.append(int(entry))
                        break
            except OSError:
                continue
    return sorted(found)


def _recorded_pid(holder: str) -> int | None:
    """The pid the lock file names ("pid N, what, since ...")."""
    if holder.startswith("pid "):
        head = holder[4:].split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie holds nothing and runs nothing
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill_group(pid: int) -> None:
    """SIGKILL ``pid`` and, when it leads its process group (a worker or fork server
    does: each starts a session), the whole group: what a trial started dies with it."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
