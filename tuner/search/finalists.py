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
from typing import TYPE_CHECKING, Any

from tuner.search import objective as objectives
from tuner.search.clusters import find_clusters, find_drift, processes_notes
from tuner.search.pareto import throughput_of
from tuner.search.stats import Speedup, latency_speedup, rate_speedup
from tuner.trial import spec as S
from tuner.vocabulary import FAMILY_MARGIN, Objective, config_key

if TYPE_CHECKING:
    from tuner.search.separation import Separation


@dataclass
class Candidate:
    role: str  # "default" or "candidate"
    config: dict[str, Any]
    trial: Any | None = None  # the TrialRecord the configuration came from
    runs: list[S.TrialResult] = field(default_factory=list)  # every re-measurement, in order

    @property
    def measured(self) -> list[S.TrialResult]:
        return [r for r in self.runs if r.status == S.OK and r.samples_ms]

    @property
    def name(self) -> str:
        if self.role == "default":
            return "the stock default"
        return f"trial {self.trial.number}" if self.trial is not None else "the candidate"

    def medians(self) -> list[float]:
        """Per-process medians in the order the processes ran."""
        return [float(r.stats["median"]) for r in self.measured if r.stats.get("median")]

    def noise(self) -> dict[str, Any]:
        """Its processes' speed clusters and drift (tuner.search.clusters), as stored."""
        medians = self.medians()
        return {"clusters": find_clusters(medians).to_dict(), "drift": find_drift(medians).to_dict()}


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
            **self.candidate.noise(),
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
    separation: Separation | None = None  # where re-measuring until separated stopped
    raced: dict[str, Any] = field(default_factory=dict)  # racing during the search (tuner.search.racing)

    def candidates(self) -> list[Candidate]:
        return ([self.default] if self.default is not None else []) + [v.candidate for v in self.verdicts]

    def notes(self) -> list[str]:
        """What a reader of the summary should know about how sure this is: racing,
        the extra processes and what stayed inseparable, speed clusters and drift."""
        lines = []
        if self.raced.get("processes"):
            lines.append(
                f"racing: {self.raced['processes']} more fresh processes for "
                f"{self.raced['configurations']} leading configurations during the search "
                "(not counted in --trials); finalists chosen by the median of their processes"
            )
        if self.separation is not None and (self.separation.extra or not self.separation.separable):
            lines.append(self.separation.describe())
        return lines + processes_notes([(c.name, c.medians()) for c in self.candidates()])

    def metrics(self) -> dict[str, Any]:
        """What the stored best keeps of this decision beside its finalists."""
        noise = {c.name: c.noise() for c in self.candidates()}
        found: dict[str, Any] = {
            "clustered": any(n["clusters"]["clustered"] for n in noise.values()),
            "noise": noise,
        }
        if self.separation is not None:
            found["separation"] = self.separation.to_dict()
        if self.raced:
            found["raced"] = self.raced
        return found


def pick(
    trials: Sequence[Any], objective: str, k: int, default_config: dict[str, Any], family_margin: float = FAMILY_MARGIN
) -> list[Any]:
    """The ``k`` best feasible trials with distinct configurations, the default excluded,
    then the best of every other backend/precision family whose figure is within
    ``family_margin`` of the best (at most ``k`` more; 0 or less: none), best first.
    On a noisy host a family's best can lose the top ``k`` by one unlucky process."""
    maximize = objectives.direction(objective) == "maximize"
    ranked = sorted(
        (t for t in trials if t.status == S.OK and t.value is not None), key=lambda t: -t.value if maximize else t.value
    )
    distinct: list[Any] = []
    seen = {config_key(default_config)}
    for trial in ranked:
        key = config_key(trial.config)
        if key not in seen:
            seen.add(key)
            distinct.append(trial)
    chosen = distinct[:k]
    if not chosen or family_margin <= 0:
        return chosen
    best = chosen[0].value
    families = {_family(t.config) for t in chosen}
    for trial in distinct[k:]:
        close = trial.value >= best / family_margin if maximize else trial.value <= best * family_margin
        if len(chosen) >= 2 * k or not close:
            break
        if _family(trial.config) not in families:
            families.add(_family(trial.config))
            chosen.append(trial)
    return chosen


def _family(config: dict[str, Any]) -> tuple[Any, Any]:
    return config.get("backend"), config.get("precision")


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
    objective: str,
    default: Candidate,
    finalists: list[Candidate],
    batch: int = 1,
    min_runs: int = 2,
    separation: Separation | None = None,
) -> Decision:
    """The best finalist whose advantage over the default is significant, else the
    default; what ``separation`` left undecided is stated in the summary."""
    decision = _decide(objective, default, finalists, batch, min_runs)
    decision.separation = separation
    if separation is not None and not separation.separable:
        decision.summary += f"; {separation.describe()}"
    return decision


def _decide(objective: str, default: Candidate, finalists: list[Candidate], batch: int, min_runs: int) -> Decision:
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
            verdicts.append(
                Verdict(f, None, f"only {len(f.measured)} of {len(f.runs)} re-measurements produced a result")
            )
        else:
            verdicts.append(Verdict(f, compare(objective, default, f, batch, seed=len(verdicts))))
    significant = [v for v in verdicts if v.speedup is not None and v.speedup.significant]
    if significant:
        chosen = max(significant, key=lambda v: v.speedup.point if v.speedup else 0.0)
        return Decision(
            chosen.candidate,
            chosen.speedup,
            verdicts,
            f"significantly faster than the stock default: {chosen.speedup.describe()}" if chosen.speedup else "",
            default,
        )
    measured = [v for v in verdicts if v.speedup is not None]
    if measured:
        top = max(measured, key=lambda v: v.speedup.point if v.speedup else 0.0)
        assert top.speedup is not None
        return Decision(
            default,
            None,
            verdicts,
            f"no finalist is significantly better than the stock default (best: {top.speedup.describe()}); "
            "the stock default stays",
            default,
        )
    return Decision(default, None, verdicts, "no finalist could be re-measured; the stock default stays", default)


def _median_of_medians(candidate: Candidate) -> float:
    medians = sorted(r.stats["median"] for r in candidate.measured)
    return medians[len(medians) // 2]
