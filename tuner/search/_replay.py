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
from tuner.search.quiet import QuietRunner
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
    kind: str  # "finalist" or "verify" (tuner.store.REPLAY_KINDS)
    label: Label = finalist_label
    on_run: Callable[[F.Candidate, int, S.TrialResult], None] | None = None  # after each run (progress, printing)

    def remeasure(self, candidates: list[F.Candidate], rounds: int) -> None:
        """``rounds`` runs of every candidate, interleaved with a rotating order
        (tuner.search.finalists.remeasure); runs already in ``candidate.runs`` count."""
        F.remeasure(candidates, rounds, self.run)

    def run(self, candidate: F.Candidate, round_: int) -> S.TrialResult:
        """One fresh process for ``candidate``, judged and stored; never raises for a failed run."""
        measure = replace(self.measure, prune_above_ms=None)  # a replay is measured in full
        result, plan = self.quiet.run(self.workload, candidate.config, self.reference,
                                      self.label(candidate, round_), measure)
        verdict = self.judge(result, candidate.config, plan)
        result.status, result.reason = verdict.status, verdict.reason
        stats = result.stats
        self.store.record_replay(
            self.study_id, kind=self.kind, role=candidate.role, round=round_, config=candidate.config,
            status=result.status, trial_id=candidate.trial.id if candidate.trial is not None else None,
            reason=result.reason, median_ms=stats.get("median"), p90_ms=stats.get("p90"), p99_ms=stats.get("p99"),
            n_samples=int(stats["n"]) if "n" in stats else None, samples_ms=result.samples_ms,
            throughput=stats.get("throughput"), flags=result.flags or None, noise=result.noise or None,
        )
        if self.on_run is not None:
            self.on_run(candidate, round_, result)
        return result

    def reuse(self, trials: Sequence[TrialRecord], candidates: list[F.Candidate]) -> None:
        """Rounds already re-measured since the study's last trial (a repeated or
        resumed run) count; only the missing rounds run again."""
        from tuner.trial.measure import summarize

        finished = [t.finished_at for t in trials if t.status not in NOT_COUNTED and t.finished_at is not None]
        since = max(finished) if finished else None
        by_key = {config_key(c.config): c for c in candidates}
        for stored in self.store.replays(self.study_id, kind=self.kind):
            candidate = by_key.get(config_key(stored.config))
            if candidate is None or (since is not None and stored.created < since):
                continue
            stats = summarize(stored.samples_ms) if stored.samples_ms else {}
            if stored.throughput is not None:
                stats["throughput"] = stored.throughput
            candidate.runs.append(S.TrialResult(status=stored.status, reason=stored.reason,
                                                samples_ms=list(stored.samples_ms), stats=stats,
                                                flags=list(stored.flags or [])))


def finalists(replay: Replay, trials: Sequence[TrialRecord], default_config: dict[str, Any],
              default: TrialRecord | None, k: int, rounds: int, progress: Progress | None = None) -> F.Decision:
    """The study's end: its ``k`` best configurations and the stock default, each in
    ``rounds`` fresh processes (those already stored reused), and the decision."""
    objective = replay.judge.objective
    candidates = [F.Candidate("default", default_config, default)]
    candidates += [F.Candidate("candidate", t.config, t) for t in F.pick(trials, objective, k, default_config)]
    replay.reuse(trials, candidates)
    if progress is not None:
        progress.start(replay.workload, sum(len(c.runs) for c in candidates), len(candidates) * rounds, "finalists")
        replay = replace(replay, on_run=lambda candidate, round_, result: progress.step())
    try:
        replay.remeasure(candidates, rounds)
    finally:
        if progress is not None:
            progress.close()
    return F.decide(objective, candidates[0], candidates[1:], replay.judge.batch)
