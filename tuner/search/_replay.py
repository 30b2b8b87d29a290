"""Replays: configurations re-measured in fresh processes, interleaved with the stock
default, outside the search. One routine for the finalists of `tuner auto` and for
`tuner verify`: every run is judged as a study's trial is (``Judge``: the study's own
accuracy guard and memory limit, the probe against the plan) and stored as a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner.search import finalists as F
from tuner.search._judge import NOT_COUNTED, Judge
from tuner.search._progress import Progress
from tuner.search.clusters import MIN_PROCESSES, find_clusters
from tuner.search.quiet import QuietRunner
from tuner.search.racing import RACE, raced, stored_result
from tuner.search.separation import remeasure_until_separated
from tuner.store import Store, TrialRecord
from tuner.trial import spec as S
from tuner.vocabulary import config_key

# (candidate, round) -> the label a noise warning names the run by
Label = Callable[[F.Candidate, int], str]


def finalist_label(candidate: F.Candidate, round_: int) -> str:
    trial = candidate.trial
    name = "the stock default" if candidate.role == "default" else f"finalist trial {trial.number if trial else '-'}"
    return f"{name}, round {round_ + 1}"


@dataclass
class Replay:
    """Re-measures candidates of stored study ``study_id`` round by round."""

    quiet: QuietRunner
    store: Store
    study_id: int
    workload: S.Workload
    reference: str | None  # the fp32 outputs accuracy is compared with
    judge: Judge
    measure: S.MeasureSettings
    kind: str  # "finalist", "verify" or "race" (tuner.store.REPLAY_KINDS)
    label: Label = finalist_label
    on_run: Callable[[F.Candidate, int, S.TrialResult], None] | None = None  # after each run (progress, printing)

    def remeasure(self, candidates: list[F.Candidate], rounds: int) -> None:
        """``rounds`` runs of every candidate, interleaved with a rotating order
        (tuner.search.finalists.remeasure); runs already in ``candidate.runs`` count."""
        F.remeasure(candidates, rounds, self.run)

    def run(self, candidate: F.Candidate, round_: int) -> S.TrialResult:
        """One fresh process for ``candidate``, judged and stored; never raises for a failed run."""
        measure = replace(self.measure, prune_above_ms=None)  # a replay is measured in full
        result, plan = self.quiet.run(
            self.workload, candidate.config, self.reference, self.label(candidate, round_), measure
        )
        verdict = self.judge(result, candidate.config, plan)
        result.status, result.reason = verdict.status, verdict.reason
        stats = result.stats
        noise = dict(result.noise)
        medians = [*candidate.medians(), *([stats["median"]] if result.status == S.OK and stats.get("median") else [])]
        if len(medians) >= MIN_PROCESSES:
            # The speed clusters of this configuration's processes so far, this one included.
            noise["clusters"] = find_clusters(medians).to_dict()
        self.store.record_replay(
            self.study_id,
            kind=self.kind,
            role=candidate.role,
            round=round_,
            config=candidate.config,
            status=result.status,
            trial_id=candidate.trial.id if candidate.trial is not None else None,
            reason=result.reason,
            median_ms=stats.get("median"),
            p90_ms=stats.get("p90"),
            p99_ms=stats.get("p99"),
            n_samples=int(stats["n"]) if "n" in stats else None,
            samples_ms=result.samples_ms,
            throughput=stats.get("throughput"),
            flags=result.flags or None,
            noise=noise or None,
        )
        if self.on_run is not None:
            self.on_run(candidate, round_, result)
        return result

    def reuse(self, trials: Sequence[TrialRecord], candidates: list[F.Candidate]) -> None:
        """Rounds already re-measured since the study's last trial (a repeated or
        resumed run) count; only the missing rounds run again."""
        finished = [t.finished_at for t in trials if t.status not in NOT_COUNTED and t.finished_at is not None]
        since = max(finished) if finished else None
        by_key = {config_key(c.config): c for c in candidates}
        for stored in self.store.replays(self.study_id, kind=self.kind):
            candidate = by_key.get(config_key(stored.config))
            if candidate is None or (since is not None and stored.created < since):
                continue
            candidate.runs.append(stored_result(stored))


def finalists(
    replay: Replay,
    trials: Sequence[TrialRecord],
    default_config: dict[str, Any],
    default: TrialRecord | None,
    k: int,
    rounds: int,
    progress: Progress | None = None,
    max_rounds: int | None = None,
) -> F.Decision:
    """The study's end: its ``k`` best configurations as racing ranked them, with the
    best of each other backend/precision family close to them (tuner.search.finalists.pick),
    and the stock default, each in ``rounds`` fresh processes (those already stored
    reused), then more for those the leader cannot be told apart from, up to
    ``max_rounds`` (tuner.search.separation); and the decision."""
    objective, batch = replay.judge.objective, replay.judge.batch
    ranked, cost = raced(trials, replay.store.replays(replay.study_id, kind=RACE), objective, batch)
    by_id = {t.id: t for t in trials}
    candidates = [F.Candidate("default", default_config, default)]
    candidates += [
        F.Candidate("candidate", t.config, by_id[t.id]) for t in F.pick(ranked, objective, k, default_config)
    ]
    replay.reuse(trials, candidates)
    if progress is not None:
        bar = progress
        bar.start(replay.workload, sum(len(c.runs) for c in candidates), len(candidates) * rounds, "finalists")
        replay = replace(replay, on_run=lambda candidate, round_, result: bar.step())
    try:
        separation = remeasure_until_separated(
            objective,
            candidates,
            rounds,
            max(rounds, max_rounds or rounds),
            replay.run,
            batch,
            progress.extend if progress is not None else None,
        )
    finally:
        if progress is not None:
            progress.close()
    decision = F.decide(objective, candidates[0], candidates[1:], batch, separation=separation)
    decision.raced = cost
    return decision
