"""Finalists re-measured until they can be told apart, or until a cap says they cannot.

Five fresh processes per finalist bound a speedup on a quiet host; on a host whose
processes fall into speed clusters (docs/measurement.md) the intervals of two close
finalists overlap after five, and the one with the better point estimate is only the
one whose processes drew the fast cluster more often. So after the first rounds the
leader (the best point estimate) is compared with every other candidate, the stock
default included: each one whose interval against the leader still contains 1 is
*undecided*, and the leader and the undecided get one more fresh process each, round
after round (interleaved, the order rotating), until none is left or a candidate has
``max_rounds`` processes. What is left then is stated: "not separable on this host",
with the interval, rather than a winner picked by luck.

Looking again after every round makes "separated" easier to reach than one look does
(sequential testing): simulated with 5 to 12 processes and a 5% spread between
processes, two equal finalists were told apart 18% of the time with 95% intervals at
every look, 8% with 99% intervals (close to Pocock's boundary for that many looks),
while finalists 8% apart were told apart 95% and 70% of the time. So the rounds stop,
and "separable" is stated, on the 99% interval; each finalist's speedup over the
default (the decision) keeps its 95% interval over every process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.search import finalists as F
from tuner.search.pareto import throughput_of
from tuner.search.stats import (
    CONFIDENCE,
    RESAMPLES,
    Speedup,
    interval,
    pooled_statistic,
    resampled_mean,
    resampled_statistic,
)
from tuner.trial import spec as S
from tuner.vocabulary import Objective

# The looks between rounds: fewer resamples; the separation test's interval (the module docstring).
INTERIM_RESAMPLES = 1000
INTERIM_CONFIDENCE = 0.99


@dataclass(frozen=True)
class Undecided:
    candidate: F.Candidate
    leader_over: Speedup  # the leader's speedup over it: its interval contains 1


@dataclass
class Separation:
    """Where the re-measurement stopped: the leader, what it could not be told apart
    from, and what it cost."""

    leader: F.Candidate | None
    undecided: list[Undecided] = field(default_factory=list)
    processes: int = 0  # the most fresh processes any candidate got
    extra: int = 0  # processes run past the first rounds
    capped: bool = False  # stopped by the cap with candidates undecided

    @property
    def separable(self) -> bool:
        return not self.undecided

    def describe(self) -> str:
        if self.leader is None:
            return "no finalist measured twice: nothing to separate"
        if self.separable:
            more = f" after {self.extra} more fresh processes" if self.extra else ""
            return f"{self.leader.name} is separated from every other candidate{more}"
        others = "; ".join(
            f"{u.candidate.name} ({u.leader_over.describe()} in {self.leader.name}'s favour, "
            f"{u.leader_over.candidate_runs} vs {u.leader_over.baseline_runs} processes)"
            for u in self.undecided
        )
        return f"not separable on this host: {self.leader.name} from {others}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "leader": _number(self.leader),
            "separable": self.separable,
            "processes": self.processes,
            "extra_processes": self.extra,
            "capped": self.capped,
            "undecided": [
                {"trial": _number(u.candidate), "role": u.candidate.role, **u.leader_over.to_dict()}
                for u in self.undecided
            ],
        }


class Bootstraps:
    """Each candidate's resampled statistic, computed once per number of processes."""

    def __init__(
        self, objective: str, batch: int = 1, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
    ) -> None:
        self.objective, self.batch, self.resamples, self.confidence = objective, batch, resamples, confidence
        self._cache: dict[tuple[int, int], tuple[float, np.ndarray]] = {}

    def of(self, candidate: F.Candidate) -> tuple[float, np.ndarray]:
        """(point figure, resampled figures): latency statistic (lower is better) or mean rate."""
        runs = candidate.measured
        key = (id(candidate), len(runs))
        if key not in self._cache:
            seed = len(self._cache)
            if self.objective == Objective.THROUGHPUT:
                rates = _rates(runs, self.batch)
                self._cache[key] = (float(np.mean(rates)), resampled_mean(rates, resamples=self.resamples, seed=seed))
            else:
                samples = [r.samples_ms for r in runs]
                point = pooled_statistic(samples, self.objective)
                self._cache[key] = (
                    point,
                    resampled_statistic(samples, self.objective, resamples=self.resamples, seed=seed),
                )
        return self._cache[key]

    def leader_over(self, leader: F.Candidate, other: F.Candidate) -> Speedup:
        (lp, lb), (op, ob) = self.of(leader), self.of(other)
        if self.objective == Objective.THROUGHPUT:
            return interval(lp / op, lb / ob, len(other.measured), len(leader.measured), self.confidence)
        return interval(op / lp, ob / lb, len(other.measured), len(leader.measured), self.confidence)

    def better(self, a: F.Candidate, b: F.Candidate) -> bool:
        pa, pb = self.of(a)[0], self.of(b)[0]
        return pa > pb if self.objective == Objective.THROUGHPUT else pa < pb


def separate(boot: Bootstraps, candidates: Sequence[F.Candidate], min_runs: int = 2) -> Separation:
    """The leader among the finalists (``candidates[0]`` is the stock default) and the
    candidates whose interval against it contains 1."""
    comparable = [c for c in candidates if len(c.measured) >= min_runs]
    finalists = [c for c in comparable if c.role != "default"]
    if not finalists:
        return Separation(None, processes=_most(candidates))
    leader = finalists[0]
    for other in finalists[1:]:
        if boot.better(other, leader):
            leader = other
    undecided = []
    for other in comparable:
        if other is not leader:
            over = boot.leader_over(leader, other)
            if over.contains(1.0):
                undecided.append(Undecided(other, over))
    return Separation(leader, undecided, _most(candidates))


def remeasure_until_separated(
    objective: str,
    candidates: list[F.Candidate],
    rounds: int,
    max_rounds: int,
    run: Callable[[F.Candidate, int], S.TrialResult],
    batch: int = 1,
    on_extra: Callable[[int], None] | None = None,
) -> Separation:
    """``rounds`` interleaved rounds of every candidate (tuner.search.finalists.remeasure),
    then one more process for the leader and each undecided candidate per round, up to
    ``max_rounds`` processes; ``on_extra(n)`` is told before each extra round of n runs.
    Runs already in ``candidate.runs`` (an interrupted run resumed) count."""
    F.remeasure(candidates, rounds, run)
    interim = Bootstraps(objective, batch, INTERIM_RESAMPLES, INTERIM_CONFIDENCE)
    extra = 0
    for round_ in range(rounds, max_rounds):
        found = separate(interim, candidates)
        if found.leader is None or found.separable:
            break
        group = [found.leader, *(u.candidate for u in found.undecided)]
        shift = round_ % len(group)
        due = [c for c in group[shift:] + group[:shift] if len(c.runs) <= round_]
        if on_extra is not None and due:
            on_extra(len(due))
        for candidate in due:
            candidate.runs.append(run(candidate, round_))
            extra += 1
    # What is stated: the same test over every process, with every resample.
    found = separate(Bootstraps(objective, batch, confidence=INTERIM_CONFIDENCE), candidates)
    found.extra = extra
    found.capped = found.leader is not None and not found.separable
    return found


def _rates(runs: list[S.TrialResult], batch: int) -> list[float]:
    return [throughput_of(r.stats.get("median"), r.stats.get("throughput"), batch) or 0.0 for r in runs]


def _most(candidates: Sequence[F.Candidate]) -> int:
    return max((len(c.runs) for c in candidates), default=0)


def _number(candidate: F.Candidate | None) -> int | None:
    return candidate.trial.number if candidate is not None and candidate.trial is not None else None
