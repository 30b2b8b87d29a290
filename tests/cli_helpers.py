"""Running the `tuner` command as a user does, for the tests that drive it end to end.
(pytest puts tests/ on sys.path: it holds the root conftest.py and no __init__.py.)"""

from __future__ import annotations

import subprocess
import sys


def run_tuner(*args: str, env: dict[str, str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m tuner ARGS`` in a fresh process; with ``check``, a non-zero exit
    fails the test with the command's whole output."""
    proc = subprocess.run([sys.executable, "-m", "tuner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tuner {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
