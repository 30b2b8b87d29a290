"""Rows before tells: every trial's row is committed to the store before Optuna is told.

A tuner killed at any point leaves Optuna trials RUNNING; the next run reconciles
them: a RUNNING trial with a row is told from the row, one without a row was cut
short and is recorded ``interrupted``. Trial numbers are Optuna's, so each appears once.

An interrupted configuration is measured when the study resumes, before anything
else (Optuna's queue holds the warm start, which would otherwise come first and, with
a small --trials, leave it out): ``reruns`` reads from the rows which interrupted
configurations were not measured since, and ``next_trial`` gives each its own trial
ahead of the queue. Reading it from the rows, not from a queue entry, makes it exactly
once whatever point the tuner was killed at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tuner.errors import UserError
from tuner.search import objective as objectives
from tuner.search._judge import MEASURED, NOT_COUNTED, Judge
from tuner.search.pruning import FEASIBLE_ATTR, MEDIAN_ATTR
from tuner.store import NewTrial, Store, TrialRecord
from tuner.trial import spec as S
from tuner.trial.plan import RuntimePlan
from tuner.vocabulary import Objective, config_key

if TYPE_CHECKING:
    import optuna

    from tuner.space import Space


# The reason an interrupted trial is stored with.
INTERRUPTED_REASON = "the tuner stopped during this trial; its configuration runs first when the study resumes"


def now() -> datetime:
    return datetime.now(UTC)


def config_from_params(space: Space, params: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration ``space.sample`` makes of Optuna ``params`` (None: they do not
    describe one of its configurations)."""
    backend = params.get("backend")
    if backend not in space.backends:
        return None
    config: dict[str, Any] = {"backend": backend}
    for dim in space.dimensions(backend):
        if dim.active(config):
            if dim.param not in params:
                return None
            config[dim.name] = params[dim.param]
    return config


class Recorder:
    """Writes a study's trials to the store, then tells Optuna what the rows say."""

    def __init__(self, store: Store, judge: Judge) -> None:
        self.store = store
        self.judge = judge
        # How a measured trial's row is written: a study keeps it in a journal until the
        # database has it (tuner.search._journal); the store's own write otherwise.
        self.write: Callable[[NewTrial], Any] = store.record_trial

    def record_measured(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        study_id: int,
        config: dict[str, Any],
        result: S.TrialResult,
        plan: RuntimePlan,
        started: datetime,
    ) -> TrialRecord:
        """Judge a worker's result, store it, tell Optuna; returns the stored row."""
        verdict = self.judge(result, config, plan)
        measured = NewTrial.measured(
            study_id,
            trial.number,
            config,
            result,
            value=verdict.value,
            accuracy_ok=self.judge.accuracy_ok(result.accuracy),
            started_at=started,
            finished_at=now(),
        )
        self.write(
            replace(
                measured,
                status=verdict.status,
                reason=verdict.reason,
                # The tail only where it explains something.
                stderr_tail="" if verdict.status == S.OK else measured.stderr_tail,
                throughput=(
                    objectives.throughput(result.stats, self.judge.batch)
                    if result.stats.get("median")
                    else measured.throughput
                ),
            )
        )
        row = self.store.trial(study_id, trial.number)
        assert row is not None  # committed just above
        self.tell(study, trial, row)
        return row

    def record_duplicate(
        self, study: optuna.Study, trial: optuna.Trial, study_id: int, config: dict[str, Any], earlier: TrialRecord
    ) -> None:
        """A configuration measured before: stored as ``duplicate``, told its earlier result."""
        self.store.record_trial(
            NewTrial(
                study_id,
                trial.number,
                config,
                S.DUPLICATE,
                reason=f"same configuration as trial {earlier.number}; its result was reused",
                value=earlier.value,
                started_at=now(),
                finished_at=now(),
            )
        )
        self.tell(study, trial, earlier)

    def record_skipped(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        study_id: int,
        config: dict[str, Any],
        why: str,
        median_ms: float,
    ) -> None:
        """Stored, and told to Optuna as pruned at its backend's best median, so the
        sampler learns the region is slow without a process being started."""
        from optuna.trial import TrialState

        self.store.record_trial(
            NewTrial(study_id, trial.number, config, S.SKIPPED, reason=why, started_at=now(), finished_at=now())
        )
        trial.set_user_attr(MEDIAN_ATTR, median_ms)
        trial.set_user_attr(FEASIBLE_ATTR, False)
        trial.set_constraint("accuracy", 0.0)
        trial.set_constraint("memory", 0.0)
        trial.report(median_ms, 0)
        study.tell(trial, state=TrialState.PRUNED)

    def reconcile(self, study: optuna.Study, study_id: int, space: Space | None = None) -> None:
        """Settle Optuna trials left RUNNING by a tuner that died. (``space`` reads the
        configuration of a trial killed before it was sampled from its fixed params.)"""
        import optuna
        from optuna.trial import TrialState

        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # A live handle on the stored trial (FrozenTrial keeps its id private).
            trial = optuna.trial.Trial(study, frozen._trial_id)
            row = self.store.trial(study_id, frozen.number)
            if row is not None:
                if row.status == S.DUPLICATE:  # told from the trial it repeats
                    row = next(
                        (
                            r
                            for r in self.store.trials(study_id)
                            if r.status not in NOT_COUNTED and config_key(r.config) == config_key(row.config)
                        ),
                        row,
                    )
                self.tell(study, trial, row)
                continue
            config = (
                frozen.user_attrs.get("config")
                or (
                    config_from_params(space, frozen.system_attrs.get("fixed_params") or frozen.params)
                    if space is not None
                    else None
                )
                or {}
            )
            self.store.record_trial(
                NewTrial(
                    study_id,
                    frozen.number,
                    config,
                    S.INTERRUPTED,
                    reason=INTERRUPTED_REASON,
                    started_at=frozen.datetime_start,
                    finished_at=now(),
                )
            )
            study.tell(trial, state=TrialState.FAIL)

    def reruns(self, study_id: int) -> list[dict[str, Any]]:
        """The configurations of interrupted trials not measured since, oldest first,
        each once: the study runs them before anything else."""
        rows = self.store.trials(study_id)
        counted = {config_key(r.config) for r in rows if r.status not in NOT_COUNTED}
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = config_key(row.config) if row.config else ""
            if row.status == S.INTERRUPTED and key and key not in counted:
                found.setdefault(key, row.config)
        return list(found.values())

    def next_trial(self, study: optuna.Study, space: Space, rerun: dict[str, Any] | None) -> optuna.Trial:
        """The next trial: an interrupted configuration (``rerun``) ahead of everything,
        else Optuna's."""
        if rerun is not None:
            try:
                params = space.params_for(rerun)
            except (UserError, ValueError, KeyError):  # no longer a configuration of this space
                params = None
            if params is not None:
                return self.ask_for(study, params)
        return study.ask()

    def ask_for(self, study: optuna.Study, params: dict[str, Any]) -> optuna.Trial:
        """A new RUNNING trial with ``params`` fixed, ahead of Optuna's queue of
        waiting trials (``study.ask`` would pop the oldest waiting one first): what
        ``study.ask`` does for a new trial, with the enqueued trial's fixed params. It
        goes through the study's own storage (Optuna wraps the RDBStorage in a cache
        that must see every trial)."""
        import optuna
        from optuna.trial import TrialState, create_trial

        template = create_trial(state=TrialState.RUNNING, system_attrs={"fixed_params": params})
        trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
        return optuna.trial.Trial(study, trial_id)

    def record_interrupted(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        study_id: int,
        config: dict[str, Any],
        started: datetime,
        why: str,
    ) -> None:
        """A trial the study itself stops in (a full disk): stored ``interrupted``, so
        its configuration runs first when the study resumes, and told as failed."""
        from optuna.trial import TrialState

        self.store.record_trial(
            NewTrial(
                study_id,
                trial.number,
                config,
                S.INTERRUPTED,
                reason=f"{why}; {INTERRUPTED_REASON.split('; ', 1)[1]}",
                started_at=started,
                finished_at=now(),
            )
        )
        study.tell(trial, state=TrialState.FAIL)

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
