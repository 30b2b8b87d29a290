"""The end of one study: its latency-throughput front, its winner (after the
finalists' re-measurement) with its speedup over the stock default, and the stored best."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.search import finalists as F
from tuner.search import objective as objectives
from tuner.search._options import TuneOptions
from tuner.search._progress import Progress
from tuner.search._replay import Replay, finalists
from tuner.search.pareto import front, throughput_of
from tuner.search.racing import RACE, raced
from tuner.search.stats import Speedup
from tuner.store import Store, TrialRecord
from tuner.trial import spec as S
from tuner.vocabulary import Objective, config_key


@dataclass
class StudyOutcome:
    workload: S.Workload
    objective: str
    trials: list[TrialRecord]  # ordered by number
    winner: TrialRecord | None
    default: TrialRecord | None  # the stock default's trial
    speedup: float | None
    stop_reason: str
    speedup_ci: Speedup | None = None  # the winner's over the default
    decision: F.Decision | None = None  # None: no finalists re-measured
    pareto: list[TrialRecord] = field(default_factory=list)  # the trials on the latency-throughput front


@dataclass(frozen=True)
class Where:
    """Whose winner a study decides: the store's machine and model ids."""

    machine_id: int
    model_pk: int


def finish(
    store: Store,
    options: TuneOptions,
    where: Where,
    study_id: int,
    workload: S.Workload,
    stop_reason: str,
    default_config: dict[str, Any],
    replay: Replay,
    progress: Progress | None = None,
) -> StudyOutcome:
    """Decide and store the study's answer; ``replay`` re-measures its finalists."""
    objective = options.objective
    trials = store.trials(study_id)
    on_front = store_front(store, study_id, trials, options.batch)
    default_key = config_key(default_config)
    default = next((t for t in trials if t.status == S.OK and config_key(t.config) == default_key), None)
    if objective == Objective.PARETO:  # a front, not a winner
        store.set_study_status(study_id, "done")
        return StudyOutcome(workload, objective, trials, None, default, None, stop_reason, pareto=on_front)
    # The search's best as racing ranked it (the median of a raced configuration's processes).
    ranked, _ = raced(trials, store.replays(study_id, kind=RACE), objective, options.batch)
    best = objectives.best(ranked, objective)
    winner = next((t for t in trials if best is not None and t.id == best.id), None)
    speedup = None
    ci = decision = None
    if winner is not None and options.finalists > 0:
        decision = finalists(
            replay,
            trials,
            default_config,
            default,
            options.finalists,
            options.finalist_rounds,
            progress,
            options.finalist_max_rounds,
        )
        winner, ci = decision.winner.trial, decision.speedup
        if ci is not None:
            speedup = ci.point
        elif winner is not None and default is not None and winner.id == default.id:
            speedup = 1.0  # nothing significantly better: the default is the answer
    elif winner is not None and default is not None and default.value and winner.value:
        ratio = default.value / winner.value
        speedup = 1.0 / ratio if objective == Objective.THROUGHPUT else ratio
    if winner is not None and options.record_best:
        _set_best(store, options, where, workload, winner, default, speedup, ci, decision)
    store.set_study_status(study_id, "done")
    return StudyOutcome(
        workload,
        objective,
        trials,
        winner,
        default,
        speedup,
        stop_reason,
        speedup_ci=ci,
        decision=decision,
        pareto=on_front,
    )


def _set_best(
    store: Store,
    options: TuneOptions,
    where: Where,
    workload: S.Workload,
    winner: TrialRecord,
    default: TrialRecord | None,
    speedup: float | None,
    ci: Speedup | None,
    decision: F.Decision | None,
) -> None:
    metrics: dict[str, Any] = {
        "median_ms": winner.median_ms,
        "p90_ms": winner.p90_ms,
        "p99_ms": winner.p99_ms,
        "value": winner.value,
        "accuracy": winner.accuracy,
        "trial_number": winner.number,
    }
    if decision is not None:
        metrics["finalist_rounds"] = options.finalist_rounds
        metrics["decision"] = decision.summary
        metrics.update(decision.metrics())  # speed clusters, drift, separation, racing
        remeasured = [r.stats["median"] for r in decision.winner.measured]
        if remeasured:
            metrics["remeasured_median_ms"] = sorted(remeasured)[len(remeasured) // 2]
    store.set_best(
        where.machine_id,
        where.model_pk,
        workload.seq_len,
        workload.batch,
        options.objective,
        winner.id,
        winner.config,
        metrics,
        default.median_ms if default else None,
        speedup,
        speedup_low=ci.low if ci else None,
        speedup_high=ci.high if ci else None,
        significant=ci.significant if ci else (False if decision is not None else None),
        finalists=[v.to_dict() for v in decision.verdicts] if decision is not None else None,
    )


def store_front(store: Store, study_id: int, trials: Sequence[TrialRecord], batch: int) -> list[TrialRecord]:
    """Store and return the feasible trials on the latency-throughput front."""
    points = []
    for t in trials:
        rate = throughput_of(t.median_ms, t.throughput, batch)
        if t.status == S.OK and t.median_ms is not None and rate is not None:
            points.append((t.number, t.median_ms, rate))
    numbers = front(points)
    store.set_pareto(study_id, numbers)
    by_number = {t.number: t for t in trials}
    return [by_number[n] for n in numbers]
