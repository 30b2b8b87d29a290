"""What a study shows while it runs: a progress bar per workload (trials, best so far,
time left) and per finalist round, the warnings, written above the bar, and its notes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tuner.search import objective as objectives
from tuner.store import TrialRecord
from tuner.trial import spec as S


class Progress:
    def __init__(
        self, enabled: bool, trials: int | None, objective: str, warn: Callable[[str], None] | None = None
    ) -> None:
        """``trials``: the bar's total for a search; ``warn`` receives warnings and
        notes instead of stderr (benchmarks silence them)."""
        self.enabled = enabled
        self.trials = trials
        self.objective = objective
        self._warn_to = warn
        self._bar: Any = None  # a tqdm bar while one is shown

    @property
    def active(self) -> bool:
        return self._bar is not None

    def start(self, workload: S.Workload, done: int, total: int | None = None, what: str = "") -> None:
        """A bar for the search of ``workload`` (``what`` empty) or for ``what`` (finalists)."""
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=total if what else self.trials,
            initial=done,
            unit="run" if what else "trial",
            dynamic_ncols=True,
            desc=f"seq {workload.seq_len}{' ' + what if what else ''}",
            leave=True,
        )

    def extend(self, runs: int) -> None:
        """``runs`` more than the bar was started with (finalists re-measured until separated)."""
        if self._bar is not None:
            self._bar.total += runs
            self._bar.refresh()

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def advance(self, row: TrialRecord, best: TrialRecord | None, deadline: float | None) -> None:
        """One trial done: the best so far, the last trial's figure or status, time left."""
        if self._bar is None:
            return
        self._bar.update(1)
        postfix = {}
        if best is not None and best.value is not None:
            postfix["best"] = (
                f"{best.value:.3g} {objectives.unit(self.objective)} "
                f"{best.config.get('backend')} {best.config.get('precision', '')}"
            )
        postfix["last"] = row.status if row.status != S.OK else f"{row.value:.3g}"
        if row.flags:
            postfix["flags"] = ",".join(row.flags)
        if deadline is not None:
            postfix["left"] = f"{max(0, deadline - time.monotonic()) / 60:.1f} min"
        self._bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None

    def note(self, message: str) -> None:
        """What the study says about itself (resumed, a new study, a fleet's wait), not a warning."""
        if self._warn_to is not None:
            self._warn_to(message)
        else:
            print(f"tuner: {message}", file=sys.stderr)

    def warn(self, message: str) -> None:
        if self._warn_to is not None:
            self._warn_to(message)
        elif self._bar is not None:
            self._bar.write(f"warning: {message}", file=sys.stderr)
        else:
            print(f"warning: {message}", file=sys.stderr)
