"""Rows before tells: every trial's row is committed to the store before Optuna is told.

A tuner killed at any point leaves Optuna trials RUNNING; the next run reconciles
them: a RUNNING trial with a row is told from the row, one without a row was cut
short, is recorded ``interrupted`` and its parameters are queued again. Trial numbers
are Optuna's, so each appears once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tuner.search import objective as objectives
from tuner.search._judge import MEASURED, NOT_COUNTED, Judge
from tuner.search.pruning import FEASIBLE_ATTR, MEDIAN_ATTR
from tuner.store import NewTrial, Store, TrialRecord
from tuner.trial import spec as S
from tuner.trial.plan import RuntimePlan
from tuner.vocabulary import Objective, config_key

if TYPE_CHECKING:
    import optuna


def now() -> datetime:
    return datetime.now(UTC)


class Recorder:
    """Writes a study's trials to the store, then tells Optuna what the rows say."""

    def __init__(self, store: Store, judge: Judge) -> None:
        self.store = store
        self.judge = judge

    def record_measured(self, study: optuna.Study, trial: optuna.Trial, study_id: int, config: dict[str, Any],
                        result: S.TrialResult, plan: RuntimePlan, started: datetime) -> TrialRecord:
        """Judge a worker's result, store it, tell Optuna; returns the stored row."""
        verdict = self.judge(result, config, plan)
        measured = NewTrial.measured(study_id, trial.number, config, result, value=verdict.value,
                                     accuracy_ok=self.judge.accuracy_ok(result.accuracy),
                                     started_at=started, finished_at=now())
        self.store.record_trial(replace(
            measured, status=verdict.status, reason=verdict.reason,
            # The tail only where it explains something.
            stderr_tail="" if verdict.status == S.OK else measured.stderr_tail,
            throughput=(objectives.throughput(result.stats, self.judge.batch) if result.stats.get("median")
                        else measured.throughput),
        ))
        row = self.store.trial(study_id, trial.number)
        assert row is not None  # committed just above
        self.tell(study, trial, row)
        return row

    def record_duplicate(self, study: optuna.Study, trial: optuna.Trial, study_id: int, config: dict[str, Any],
                         earlier: TrialRecord) -> None:
        """A configuration measured before: stored as ``duplicate``, told its earlier result."""
        self.store.record_trial(NewTrial(
            study_id, trial.number, config, S.DUPLICATE,
            reason=f"same configuration as trial {earlier.number}; its result was reused",
            value=earlier.value, started_at=now(), finished_at=now(),
        ))
        self.tell(study, trial, earlier)

    def record_skipped(self, study: optuna.Study, trial: optuna.Trial, study_id: int, config: dict[str, Any],
                       why: str, median_ms: float) -> None:
        """Stored, and told to Optuna as pruned at its backend's best median, so the
        sampler learns the region is slow without a process being started."""
        from optuna.trial import TrialState

        self.store.record_trial(NewTrial(study_id, trial.number, config, S.SKIPPED, reason=why,
                                         started_at=now(), finished_at=now()))
        trial.set_user_attr(MEDIAN_ATTR, median_ms)
        trial.set_user_attr(FEASIBLE_ATTR, False)
        trial.set_constraint("accuracy", 0.0)
        trial.set_constraint("memory", 0.0)
        trial.report(median_ms, 0)
        study.tell(trial, state=TrialState.PRUNED)

    def reconcile(self, study: optuna.Study, study_id: int) -> None:
        """Settle Optuna trials left RUNNING by a tuner that died."""
        import optuna
        from optuna.trial import TrialState

        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # A live handle on the stored trial (FrozenTrial keeps its id private).
            trial = optuna.trial.Trial(study, frozen._trial_id)
            row = self.store.trial(study_id, frozen.number)
            if row is not None:
                if row.status == S.DUPLICATE:  # told from the trial it repeats
                    row = next((r for r in self.store.trials(study_id) if r.status not in NOT_COUNTED
                                and config_key(r.config) == config_key(row.config)), row)
                self.tell(study, trial, row)
                continue
            self.store.record_trial(NewTrial(
                study_id, frozen.number, frozen.user_attrs.get("config", {}), S.INTERRUPTED,
                reason="the tuner stopped during this trial; its configuration was queued again",
                started_at=frozen.datetime_start, finished_at=now(),
            ))
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(frozen.params, skip_if_exists=False)

    def tell(self, study: optuna.Study, trial: optuna.Trial, row: TrialRecord) -> None:
        """Tell Optuna a stored result. The accuracy guard and the memory limit are
        constraints, not failures, so TPE learns where they bite; a pruned trial is
        told with its short first measurement as the intermediate value."""
        from optuna.trial import TrialState

        if row.status not in MEASURED or row.median_ms is None:
            study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr(MEDIAN_ATTR, row.median_ms)
        trial.set_user_attr(FEASIBLE_ATTR, row.status == S.OK)
        trial.set_constraint("accuracy", self.judge.accuracy_violation(row.accuracy))
        trial.set_constraint("memory", self.judge.memory_violation(row.peak_rss_mb))
        if row.status == S.PRUNED:
            trial.report(row.median_ms, 0)
            trial.should_prune()  # the pruner agrees: the worker stopped at its threshold
            study.tell(trial, state=TrialState.PRUNED)
        elif self.judge.objective == Objective.PARETO:
            # Throughput is stored with every timed trial; one instance's inverse latency otherwise.
            rate = row.throughput if row.throughput is not None else 1000.0 * self.judge.batch / row.median_ms
            study.tell(trial, [row.median_ms, rate])
        else:
            study.tell(trial, row.value)
