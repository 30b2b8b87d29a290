"""A disk that fills up during a study (docs/architecture.md, "A full disk is one
line"): not the configuration's fault, so it is said as one line (``DiskFullError``)
instead of being stored as the configuration's failure; the study records the trial it
stopped in as ``interrupted`` (tuner.search._reconcile), so that configuration runs
first once there is space.

A worker reports a full disk as its exception's text; the artifact cache is where it
writes, so that is the folder named when the library's error names none.
"""

from __future__ import annotations

from typing import Any

from tuner.errors import DiskFullError, UserError
from tuner.trial import spec as S


def reference(runner: Any, workload: S.Workload) -> str:
    """The fp32 reference's outputs (``runner.reference``); a full disk said as one."""
    try:
        return str(runner.reference(workload))
    except UserError as exc:
        full = DiskFullError.in_reason(str(exc).split(" failed: ", 1)[-1], cache_dir(runner))
        if full is not None:
            raise DiskFullError.from_line(full) from None
        raise


def disk_full(runner: Any, result: S.TrialResult) -> str | None:
    """The line that says the disk is full, when the worker failed for that."""
    if result.status not in (S.ERROR, S.CRASHED):
        return None
    return DiskFullError.in_reason(result.reason, cache_dir(runner))


def cache_dir(runner: Any) -> str:
    """Where ``runner``'s workers write their artifacts (a benchmark's runner may have none)."""
    from tuner import paths

    return str(getattr(runner, "cache_dir", None) or paths.cache_dir())
