"""Finalists: the search's best few are re-measured before one is declared the winner.

A search ranks configurations by one measurement each, on a machine whose speed
drifts; the best of thirty such numbers is partly the luckiest. So the top ``k``
distinct configurations are each re-run in ``rounds`` fresh processes, interleaved
with the stock default round by round (the order rotates, so no configuration always
runs first or last), and each is compared with the default by the two-level
bootstrap of tuner.search.stats. The winner is the best finalist whose advantage over
the default is significant; when none is, the stock default stays.

`tuner verify` uses the same re-measurement with the stored winner as the only
candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.search import objective as objectives
from tuner.search.pareto import throughput_of
from tuner.search.stats import Speedup, latency_speedup, rate_speedup
from tuner.trial import spec as S
from tuner.vocabulary import Objective, config_key


@dataclass
class Candidate:
    role: str  # "default" or "candidate"
    config: dict[str, Any]
    trial: Any | None = None  # the TrialRecord the configuration came from
    runs: list[S.TrialResult] = field(default_factory=list)  # every re-measurement, in order

    @property
    def measured(self) -> list[S.TrialResult]:
        return [r for r in self.runs if r.status == S.OK and r.samples_ms]


@dataclass
class Verdict:
    candidate: Candidate
    speedup: Speedup | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        trial = self.candidate.trial
        data: dict[str, Any] = {
            "trial": trial.number if trial is not None else None,
            "config": self.candidate.config,
            "runs": len(self.candidate.runs),
            "measured": len(self.candidate.measured),
            "medians_ms": [r.stats.get("median") for r in self.candidate.measured],
        }
        if self.speedup is not None:
            data.update(self.speedup.to_dict())
        if self.note:
            data["note"] = self.note
        return data


@dataclass
class Decision:
    winner: Candidate  # the default when no finalist is significantly better
    speedup: Speedup | None  # the winner's over the default (None: the default is the winner, or failed)
    verdicts: list[Verdict]
    summary: str
    default: Candidate | None = None  # the stock default's re-measurements



def pick(trials: Sequence[Any], objective: str, k: int, default_config: dict[str, Any]) -> list[Any]:
    """The ``k`` best feasible trials with distinct configurations, the default excluded."""
    default_key = config_key(default_config)
    ranked = sorted(
        (t for t in trials if t.status == S.OK and t.value is not None),
        key=lambda t: -t.value if objectives.direction(objective) == "maximize" else t.value,
    )
    chosen: list[Any] = []
    seen = {default_key}
    for trial in ranked:
        key = config_key(trial.config)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def remeasure(candidates: list[Candidate], rounds: int, run: Callable[[Candidate, int], S.TrialResult]) -> None:
    """Run every candidate once per round, in fresh processes, rotating the order.
    A candidate that already has a run for a round (stored by an earlier, interrupted
    run) is not run again."""
    for round_ in range(rounds):
        shift = round_ % len(candidates)
        for candidate in candidates[shift:] + candidates[:shift]:
            if len(candidate.runs) <= round_:
                candidate.runs.append(run(candidate, round_))


def compare(objective: str, default: Candidate, candidate: Candidate, batch: int = 1, seed: int = 0) -> Speedup:
    """The candidate's speedup over the default, with its confidence interval."""
    base, cand = default.measured, candidate.measured
    if objective == Objective.THROUGHPUT:
        # One figure per process: aggregate over instances where it ran several.
        def rates(runs: list[S.TrialResult]) -> list[float]:
            return [throughput_of(r.stats.get("median"), r.stats.get("throughput"), batch) or 0.0 for r in runs]

        return rate_speedup(rates(base), rates(cand), seed=seed)
    return latency_speedup([r.samples_ms for r in base], [r.samples_ms for r in cand], objective, seed=seed)


def decide(
    objective: str, default: Candidate, finalists: list[Candidate], batch: int = 1, min_runs: int = 2,
) -> Decision:
    """The best finalist whose advantage over the default is significant, else the default."""
    verdicts: list[Verdict] = []
    if len(default.measured) < min_runs:
        # Nothing to compare with: the best re-measured finalist, without a claim.
        for f in finalists:
            verdicts.append(Verdict(f, None, "the stock default did not run"))
        usable = [f for f in finalists if f.measured]
        if not usable:
            return Decision(default, None, verdicts, "no finalist and no default produced a result", default)
        best = min(usable, key=lambda f: _median_of_medians(f))
        return Decision(best, None, verdicts, "the stock default produced no result, so no speedup is stated", default)
    for f in finalists:
        if len(f.measured) < min_runs:
            verdicts.append(Verdict(f, None, f"only {len(f.measured)} of {len(f.runs)} re-measurements produced a result"))
        else:
            verdicts.append(Verdict(f, compare(objective, default, f, batch, seed=len(verdicts))))
    significant = [v for v in verdicts if v.speedup is not None and v.speedup.significant]
    if significant:
        chosen = max(significant, key=lambda v: v.speedup.point if v.speedup else 0.0)
        return Decision(chosen.candidate, chosen.speedup, verdicts,
                        f"significantly faster than the stock default: {chosen.speedup.describe()}"
                        if chosen.speedup else "", default)
    measured = [v for v in verdicts if v.speedup is not None]
    if measured:
        top = max(measured, key=lambda v: v.speedup.point if v.speedup else 0.0)
        assert top.speedup is not None
        return Decision(default, None, verdicts,
                        f"no finalist is significantly better than the stock default (best: {top.speedup.describe()}); "
                        "the stock default stays", default)
    return Decision(default, None, verdicts, "no finalist could be re-measured; the stock default stays", default)


def _median_of_medians(candidate: Candidate) -> float:
    medians = sorted(r.stats["median"] for r in candidate.measured)
    return medians[len(medians) // 2]
