"""Judging a run: the one verdict every measured figure gets, in a study's trials, its
finalists and `tuner verify`'s replays alike.

A worker reports what it measured and what the process really got; the judge decides
what that means: a worker failure stays one; settings that did not take (the probe
disagrees with the plan) are ``invalid``; a run stopped after its short first
measurement is ``pruned``; below the study's accuracy guard or above its memory limit
it is ``rejected`` (with its value: the sampler learns where the constraints bite);
else ``ok``. The guard and the limit are the study's own, stored with it, so a replay
days later is judged as its trials were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from tuner.search import objective as objectives
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.trial.plan import RuntimePlan
from tuner.trial.probe import differences

if TYPE_CHECKING:
    from tuner.store import StudyRecord

# Statuses that do not consume the trial budget: a duplicate re-uses a measurement,
# an interrupted trial is queued again, a skipped one started no process.
NOT_COUNTED = (S.DUPLICATE, S.INTERRUPTED, S.SKIPPED)
# Statuses with a measured latency that Optuna is told as a value (or, pruned, an
# intermediate value).
MEASURED = (S.OK, S.REJECTED, S.PRUNED)


class Verdict(NamedTuple):
    status: str
    reason: str | None
    value: float | None  # the objective's value where the run was timed in full


@dataclass(frozen=True)
class Judge:
    objective: str
    batch: int
    task: str  # the model's: how its accuracy figures are read
    guard: Guard = field(default_factory=Guard)
    max_memory_mb: float | None = None  # the worker's peak RSS limit (None: none)

    @classmethod
    def of_study(cls, study: StudyRecord, task: str) -> Judge:
        """The judge of a stored study: its objective, batch, accuracy guard and memory
        limit as they were stored with it."""
        settings = study.settings or {}
        return cls(study.objective, study.batch, task, guard_of(settings.get("guard")), settings.get("max_memory_mb"))

    def __call__(self, result: S.TrialResult, config: Mapping[str, Any], plan: RuntimePlan) -> Verdict:
        """The run's status: a worker failure, invalid settings, stopped early, below
        the accuracy guard or above the memory limit, or ok."""
        if result.status not in (S.OK, S.PRUNED):
            return Verdict(result.status, result.reason, None)
        problems = differences({"cpus": plan.cpus, "threads": config.get("threads")}, result.effective)
        if problems:
            return Verdict(S.INVALID, "; ".join(problems), None)
        if result.status == S.PRUNED:
            return Verdict(S.PRUNED, result.reason, None)
        value = objectives.value_of(self.objective, result.stats, self.batch)
        below = []
        accuracy = self.guard.check(self.task, result.accuracy)
        if accuracy:
            below.append(f"below the accuracy guard: {accuracy}")
        limit = self.max_memory_mb
        if limit and result.peak_rss_mb is not None and result.peak_rss_mb > limit:
            below.append(f"peak memory {result.peak_rss_mb:.0f} MB above --max-memory {limit:.0f} MB")
        if below:
            return Verdict(S.REJECTED, "; ".join(below), value)
        return Verdict(S.OK, None, value)

    def accuracy_ok(self, accuracy: dict[str, float]) -> bool | None:
        """Whether accuracy figures pass the guard (None: there are none)."""
        return self.guard.check(self.task, accuracy) is None if accuracy else None

    def accuracy_violation(self, accuracy: dict[str, Any] | None) -> float:
        """How far below the guard (Optuna's accuracy constraint; 0 without figures)."""
        return self.guard.violation(self.task, accuracy) if accuracy else 0.0

    def memory_violation(self, peak_rss_mb: float | None) -> float:
        """The excess over the memory limit as a share of it (Optuna's memory constraint)."""
        limit = self.max_memory_mb
        if not limit or peak_rss_mb is None:
            return 0.0
        return max(0.0, (peak_rss_mb - limit) / limit)


def guard_of(stored: Mapping[str, Any] | None) -> Guard:
    """A guard as a study stores it (``vars(guard)``); the default where none was stored."""
    if not stored:
        return Guard()
    known = {f.name for f in fields(Guard)}
    return Guard(**{k: v for k, v in stored.items() if k in known})
