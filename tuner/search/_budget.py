"""When a study stops: its trial budget (--trials, a fleet's shared), its time budget
(--budget), a space whose every configuration is measured, or a sampler that only
proposes what was measured (or skipped) before; and when a converged sampler is given
a random unmeasured configuration to explore (tuner.search._enqueue)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from tuner.search._enqueue import EXPLORE_AFTER

# A study ends after this many proposals in a row that start no process.
MAX_CONSECUTIVE_DUPLICATES = 50


class Budget:
    """One study's budget, from its start (``budget_s`` from now)."""

    def __init__(self, trials: int | None, budget_s: float | None, space_size: int) -> None:
        self.trials = trials
        self.deadline = time.monotonic() + budget_s if budget_s else None
        self.space_size = space_size
        self.wasted = 0  # proposals in a row that started no process

    def stop_reason(self, measured: Mapping[str, object], counted: int) -> str | None:
        """Why the study stops before its next trial (None: it goes on), given the
        configurations measured so far and the trials that count."""
        if self.trials is not None and counted >= self.trials:
            return "trial budget reached"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "time budget reached"
        if len(measured) >= self.space_size:
            return "every configuration in the space measured"
        if self.wasted >= MAX_CONSECUTIVE_DUPLICATES:
            return "the sampler only proposes measured configurations"
        return None

    def time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def not_run(self) -> bool:
        """One more proposal that started no process; True when it is time to explore."""
        self.wasted += 1
        return self.wasted % EXPLORE_AFTER == 0

    def ran(self) -> None:
        """A proposal started a process: the sampler is not stuck."""
        self.wasted = 0
