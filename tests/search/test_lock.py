import subprocess
import sys
import textwrap
import time

import pytest

from tuner.errors import LockedError
from tuner.search.lock import MachineLock


def test_second_holder_is_refused_with_who_holds_it(tmp_path):
    path = tmp_path / "machine.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from tuner.search.lock import MachineLock
        with MachineLock(Path({str(path)!r}), what="tuner auto --model holder"):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as info:
            with MachineLock(path):
                pass
        message = str(info.value)
        assert "--model holder" in message and "--wait" in message
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: no stale lock.
    with MachineLock(path):
        pass


def test_wait_blocks_until_released(tmp_path):
    path = tmp_path / "machine.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from tuner.search.lock import MachineLock
        with MachineLock(Path({str(path)!r})):
            print("held", flush=True)
            time.sleep(1.0)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with MachineLock(path, wait=True):
        waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.3
