"""Racing: the leading configurations re-measured in fresh processes while a study runs.

A study ranks configurations by one measurement each, and on a host whose fresh
processes differ (by up to 1.7x on an AMX Xeon VM whose processes fall into speed
clusters, docs/measurement.md) that one figure is partly luck. The ranking decides
where the local search climbs from, where early stopping sets its threshold, and
which configurations reach the finalists; so one lucky process would decide all
three. After every ``every`` measured trials, each of the ``top`` leaders (ranked by
the median of their per-process figures so far) that has fewer than ``processes``
processes gets one more fresh process, stored as a replay of kind ``race`` and
judged as a trial is. From then on the study ranks it by the median of its
processes: a lucky first figure is outvoted by the next two, and a leader that was
only lucky makes room for the next.

Re-measurements are not trials: they do not count against ``--trials`` (they take
their time from ``--budget`` like anything else), Optuna is not told (TPE learns from
first measurements, the structured search and the finalists from the raced figures),
and `tuner auto`'s summary says how many there were.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tuner.search import finalists as F
from tuner.search import objective as objectives
from tuner.store import ReplayRecord, TrialRecord
from tuner.trial import spec as S
from tuner.vocabulary import DEFAULT_RACE_EVERY, RACE_PROCESSES, RACE_TOP, SINGLE_OBJECTIVES

if TYPE_CHECKING:
    from tuner.search._replay import Replay

RACE = "race"  # the replay kind of a racing re-measurement


def race_label(candidate: F.Candidate, round_: int) -> str:
    return f"racing {candidate.name}, process {round_ + 1}"


@dataclass
class Racing:
    """The racing of one study; ``replay`` runs and stores its re-measurements."""

    replay: Replay  # of kind RACE
    every: int = DEFAULT_RACE_EVERY
    top: int = RACE_TOP
    processes: int = RACE_PROCESSES
    runs: dict[int, list[S.TrialResult]] = field(default_factory=dict)  # trial id -> its re-measurements
    started: int = 0  # processes started by racing in this run

    @classmethod
    def resume(cls, replay: Replay, every: int = DEFAULT_RACE_EVERY) -> Racing:
        """Racing for ``replay``'s study, with the re-measurements already stored."""
        racing = cls(replace(replay, label=race_label), every)
        for stored in replay.store.replays(replay.study_id, kind=RACE):
            if stored.trial_id is not None:
                racing.runs.setdefault(stored.trial_id, []).append(stored_result(stored))
        return racing

    @property
    def objective(self) -> str:
        return self.replay.judge.objective

    def due(self, counted: int) -> bool:
        """After every ``every``-th measured trial (single objectives only)."""
        return self.every > 0 and self.objective in SINGLE_OBJECTIVES and counted > 0 and counted % self.every == 0

    def step(self, measured: Mapping[str, TrialRecord]) -> int:
        """One more fresh process for each leader that has fewer than ``processes``;
        returns how many were started."""
        started = 0
        for row in self.leaders(measured)[: self.top]:
            runs = self.runs.setdefault(row.id, [])
            if 1 + len(runs) >= self.processes:
                continue
            candidate = F.Candidate("candidate", row.config, row, [_first(row), *runs])
            runs.append(self.replay.run(candidate, len(runs) + 1))
            started += 1
        self.started += started
        return started

    def leaders(self, measured: Mapping[str, TrialRecord]) -> list[TrialRecord]:
        """The feasible trials, best raced figure first."""
        return rank(self.view(measured).values(), self.objective)

    def view(self, measured: Mapping[str, TrialRecord]) -> dict[str, TrialRecord]:
        """``measured`` with every raced trial's value the median of its processes'."""
        return {key: self._raced(row) for key, row in measured.items()}

    def threshold(self, measured: Mapping[str, TrialRecord], current: float | None, margin: float) -> float | None:
        """Early stopping's threshold from the raced medians (``current``, the one
        from first measurements, until something has been raced)."""
        if not any(self.runs.values()):
            return current
        medians = [
            _median([row.median_ms, *(r.stats["median"] for r in self.runs.get(row.id, ()) if _ok(r))])
            for row in measured.values()
            if row.status == S.OK and row.median_ms is not None
        ]
        return min(medians) * (1.0 + margin) if medians else current

    def _raced(self, row: TrialRecord) -> TrialRecord:
        more = [
            objectives.value_of(self.objective, r.stats, self.replay.judge.batch)
            for r in self.runs.get(row.id, ())
            if _ok(r)
        ]
        if row.status != S.OK or row.value is None or not more:
            return row
        return replace(row, value=_median([row.value, *more]))


def rank(rows: Any, objective: str) -> list[TrialRecord]:
    """Feasible rows, best value first."""
    maximize = objectives.direction(objective) == "maximize"
    feasible = [r for r in rows if r.status == S.OK and r.value is not None]
    return sorted(feasible, key=lambda r: -r.value if maximize else r.value)


def raced(
    trials: Sequence[TrialRecord], replays: Sequence[ReplayRecord], objective: str, batch: int = 1
) -> tuple[list[TrialRecord], dict[str, int]]:
    """The trials as racing ranked them (each raced trial's value the median of its
    processes'), and what racing cost: processes and configurations."""
    values: dict[int, list[float]] = {}
    count = 0
    for stored in replays:
        if stored.kind != RACE or stored.trial_id is None:
            continue
        count += 1
        result = stored_result(stored)
        if _ok(result):
            values.setdefault(stored.trial_id, []).append(objectives.value_of(objective, result.stats, batch))
    ranked = [
        replace(t, value=_median([t.value, *values[t.id]]))
        if t.id in values and t.status == S.OK and t.value is not None
        else t
        for t in trials
    ]
    configurations = len({s.trial_id for s in replays if s.kind == RACE and s.trial_id is not None})
    return ranked, {"processes": count, "configurations": configurations} if count else {}


def stored_result(stored: ReplayRecord) -> S.TrialResult:
    """A stored re-measurement (a ReplayRecord) as the result it was."""
    from tuner.trial.measure import summarize

    stats = summarize(stored.samples_ms) if stored.samples_ms else {}
    if stored.throughput is not None:
        stats["throughput"] = stored.throughput
    return S.TrialResult(
        status=stored.status,
        reason=stored.reason,
        samples_ms=list(stored.samples_ms),
        stats=stats,
        flags=list(stored.flags or []),
    )


def _first(row: TrialRecord) -> S.TrialResult:
    """A trial's own measurement as the first of its processes."""
    stats = {k: v for k, v in (("median", row.median_ms), ("p90", row.p90_ms), ("p99", row.p99_ms)) if v is not None}
    return S.TrialResult(status=row.status, samples_ms=list(row.samples_ms), stats=stats)


def _ok(result: S.TrialResult) -> bool:
    return result.status == S.OK and bool(result.stats.get("median"))


def _median(values: Sequence[float | None]) -> float:
    return float(statistics.median(v for v in values if v is not None))
