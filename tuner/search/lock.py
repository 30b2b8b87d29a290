"""One machine, one study at a time.

Concurrent trials on the same cores corrupt each other's timings, so a second
``tuner auto`` refuses (or, with --wait, waits) while one runs. The lock is an
fcntl lock on a machine-wide file: the kernel drops it when its holder dies, so a
killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from tuner.errors import LockedError


def default_lock_path() -> Path:
    return Path(os.environ.get("TUNER_LOCK_FILE", "/tmp/tuner-machine.lock"))


class MachineLock:
    def __init__(self, path: Path | None = None, wait: bool = False, what: str = "tuner auto") -> None:
        self.path = path or default_lock_path()
        self.wait = wait
        self.what = what
        self._file: TextIO | None = None

    def __enter__(self) -> "MachineLock":
        file = open(self.path, "a+")  # held until __exit__
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
