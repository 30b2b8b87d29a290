"""One tuning run: for each workload, an Optuna study whose trials are worker processes.

The order of writes is what makes a run resumable: a trial's row is committed to
the store *before* Optuna is told, so when the tuner dies at any point the next run
can reconcile: a RUNNING Optuna trial with a row is told from the row; one without a
row was cut short, is recorded as interrupted, and its parameters are queued again.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from tuner.errors import UserError
from tuner.search import objective as objectives
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.trial.launch import RuntimePlan
from tuner.trial.probe import differences
from tuner.store import trial_fields
from tuner.trial.runner import TrialRunner

# Statuses that do not consume the trial budget: a duplicate re-uses a measurement,
# an interrupted trial is queued again.
NOT_COUNTED = (S.DUPLICATE, S.INTERRUPTED)
MAX_CONSECUTIVE_DUPLICATES = 50


@dataclass
class TuneOptions:
    model: str
    seq_lens: list[int]
    batch: int = 1
    trials: int | None = 30
    budget_s: float | None = None
    objective: str = "p50"
    db_url: str | None = None
    eval_texts: list[str] | None = None
    guard: Guard = field(default_factory=Guard)
    trial_timeout_s: float = 600.0
    seed: int | None = None
    measure: S.MeasureSettings = field(default_factory=S.MeasureSettings)


@dataclass
class StudyOutcome:
    workload: S.Workload
    objective: str
    trials: list  # TrialRecord, ordered by number
    winner: object | None  # TrialRecord
    default: object | None  # TrialRecord of the stock default
    speedup: float | None
    stop_reason: str


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def describe_config(config: dict) -> str:
    """A one-line, human summary of a configuration."""
    head = f"{config.get('backend')} {config.get('precision', '')}".strip()
    rest = [f"{k}={v}" for k, v in config.items() if k not in ("backend", "precision")]
    return f"{head} ({', '.join(rest)})" if rest else head


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Tuner:
    """Set up once (model, machine, store, space), then tune each workload in turn."""

    def __init__(self, options: TuneOptions, progress: bool = True) -> None:
        from tuner.hardware import detect
        from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
        from tuner.space import load_space
        from tuner.store import Store

        if options.objective not in objectives.OBJECTIVES:
            raise UserError(f"unknown objective {options.objective!r}; choose one of {', '.join(objectives.OBJECTIVES)}")
        self.options = options
        self.progress = progress
        self.model = resolve_model(options.model)
        self.machine = detect()
        self.space = load_space(self.machine)
        self.store = Store.open(options.db_url)
        self.eval_texts = options.eval_texts or list(DEFAULT_EVAL_TEXTS)
        self.machine_id = self.store.upsert_machine(
            self.machine.to_dict(),
            self.machine.fingerprint,
            self.machine.hardware_fingerprint,
            self.machine.software_fingerprint,
            self.machine.hostname,
        )
        self.runner = TrialRunner(self.model, self.machine, self.eval_texts, options.measure, options.trial_timeout_s)
        self.model_pk = self.store.upsert_model(self.model.model_id, self.model.content_hash, self.model.path, self.model.task)

    # -- one workload -----------------------------------------------------------------

    def tune(self, seq_len: int, budget_s: float | None) -> StudyOutcome:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        workload = S.Workload(seq_len=seq_len, batch=opts.batch)
        name = self._study_name(workload)
        record = self.store.get_or_create_study(
            self.machine_id, self.model_pk, seq_len, opts.batch, opts.objective,
            self.space.content_hash(), name,
            {"trials": opts.trials, "budget_s": opts.budget_s, "guard": vars(opts.guard)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=opts.seed,
                group=True,  # the space is conditional: the backend decides the other dimensions
                n_startup_trials=min(10, max(3, (opts.trials or 30) // 3)),
            )
        study = optuna.create_study(
            storage=optuna.storages.RDBStorage(self.store.url),
            study_name=name,
            direction=objectives.direction(opts.objective),
            sampler=sampler,
            load_if_exists=True,
        )
        self._reconcile(study, record.id)
        if not study.trials:
            study.enqueue_trial(self.space.params_for(self.space.default_config()))
        reference = self.runner.reference(workload)

        rows = {r.number: r for r in self.store.trials(record.id)}
        measured = {config_key(r.config): r for r in rows.values() if r.status not in NOT_COUNTED}
        counted = len(measured)
        deadline = time.monotonic() + budget_s if budget_s else None
        bar = self._progress_bar(workload, counted)
        consecutive_duplicates = 0
        stop_reason = "trial budget reached"
        try:
            while True:
                if opts.trials is not None and counted >= opts.trials:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stop_reason = "time budget reached"
                    break
                if len(measured) >= self.space.size():
                    stop_reason = "every configuration in the space measured"
                    break
                if consecutive_duplicates >= MAX_CONSECUTIVE_DUPLICATES:
                    stop_reason = "the sampler only proposes measured configurations"
                    break
                trial = study.ask()
                config = self.space.sample(trial)
                trial.set_user_attr("config", config)
                earlier = measured.get(config_key(config))
                if earlier is not None:
                    consecutive_duplicates += 1
                    self._record_duplicate(study, trial, record.id, config, earlier)
                    continue
                consecutive_duplicates = 0
                row = self._run_trial(study, trial, record.id, workload, config, reference)
                measured[config_key(config)] = row
                counted += 1
                self._advance(bar, row, deadline)
        finally:
            if bar is not None:
                bar.close()
        return self._finish(record.id, workload, stop_reason)

    def _study_name(self, workload: S.Workload) -> str:
        return ":".join([
            "tuner", self.machine.fingerprint, self.model.content_hash[:16],
            f"seq{workload.seq_len}", f"batch{workload.batch}", self.options.objective,
            self.space.content_hash()[:12], hashlib.sha256("\n".join(self.eval_texts).encode()).hexdigest()[:8],
        ])

    def _reconcile(self, study, study_id: int) -> None:
        """Settle Optuna trials left RUNNING by a tuner that died."""
        import optuna
        from optuna.trial import TrialState

        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # A live handle on the stored trial (FrozenTrial keeps its id private).
            trial = optuna.trial.Trial(study, frozen._trial_id)
            row = self.store.trial(study_id, frozen.number)
            if row is not None:
                self._tell(study, trial, row.status, row.value, row.accuracy or {})
                continue
            config = frozen.user_attrs.get("config", {})
            self.store.record_trial(
                study_id, frozen.number, config=config, status=S.INTERRUPTED,
                reason="the tuner stopped during this trial; its configuration was queued again",
                started_at=frozen.datetime_start, finished_at=_now(),
            )
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(frozen.params, skip_if_exists=False)

    def _tell(self, study, trial, status: str, value: float | None, accuracy: dict) -> None:
        """Tell Optuna a result; the accuracy guard is a constraint, so TPE learns where it bites."""
        from optuna.trial import TrialState

        if status in (S.OK, S.REJECTED) and value is not None:
            violation = self.options.guard.violation(self.model.task, accuracy) if status == S.REJECTED else 0.0
            trial.set_constraint("accuracy", violation)
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState.FAIL)

    # -- references and trials ----------------------------------------------------------

    def _run_trial(self, study, trial, study_id: int, workload: S.Workload, config: dict, reference: str):
        started = _now()
        result, plan = self.runner.run(workload, config, reference)
        status, reason, value = self._judge(result, config, plan)
        number = trial.number
        fields = {**trial_fields(result), "status": status, "reason": reason}
        if status == S.OK:
            fields["stderr_tail"] = ""  # keep the tail only where it explains something
        self.store.record_trial(
            study_id, number, config=config, value=value,
            accuracy_ok=(status != S.REJECTED) if result.accuracy else None,
            started_at=started, finished_at=_now(), **fields,
        )
        self._tell(study, trial, status, value, result.accuracy)
        return self.store.trial(study_id, number)

    def _judge(self, result: S.TrialResult, config: dict, plan: RuntimePlan) -> tuple[str, str | None, float | None]:
        """The trial's status: a worker failure, invalid settings, below the guard, or ok."""
        if result.status != S.OK:
            return result.status, result.reason, None
        value = objectives.value_of(self.options.objective, result.stats, self.options.batch)
        problems = differences({"cpus": plan.cpus, "threads": config.get("threads")}, result.effective)
        if problems:
            return S.INVALID, "; ".join(problems), None
        below = self.options.guard.check(self.model.task, result.accuracy)
        if below:
            return S.REJECTED, f"below the accuracy guard: {below}", value
        return S.OK, None, value

    def _record_duplicate(self, study, trial, study_id: int, config: dict, earlier) -> None:
        self.store.record_trial(
            study_id, trial.number, config=config, status=S.DUPLICATE,
            reason=f"same configuration as trial {earlier.number}; its result was reused",
            value=earlier.value, started_at=_now(), finished_at=_now(),
        )
        self._tell(study, trial, earlier.status, earlier.value, earlier.accuracy or {})

    # -- results ------------------------------------------------------------------------

    def _finish(self, study_id: int, workload: S.Workload, stop_reason: str) -> StudyOutcome:
        objective = self.options.objective
        trials = self.store.trials(study_id)
        default_key = config_key(self.space.default_config())
        default = next((t for t in trials if t.status == S.OK and config_key(t.config) == default_key), None)
        winner = None
        for t in trials:
            if t.status == S.OK and t.value is not None:
                if winner is None or objectives.better(objective, t.value, winner.value):
                    winner = t
        speedup = None
        if winner is not None and default is not None and default.value and winner.value:
            ratio = default.value / winner.value
            speedup = 1.0 / ratio if objective == "throughput" else ratio
        if winner is not None:
            metrics = {
                "median_ms": winner.median_ms, "p90_ms": winner.p90_ms, "p99_ms": winner.p99_ms,
                "value": winner.value, "accuracy": winner.accuracy, "trial_number": winner.number,
            }
            self.store.set_best(
                self.machine_id, self.model_pk, workload.seq_len, workload.batch, objective,
                winner.id, winner.config, metrics, default.median_ms if default else None, speedup,
            )
        self.store.set_study_status(study_id, "done")
        return StudyOutcome(workload, objective, trials, winner, default, speedup, stop_reason)

    # -- progress -----------------------------------------------------------------------

    def _progress_bar(self, workload: S.Workload, done: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.options.trials, initial=done, unit="trial", dynamic_ncols=True,
            desc=f"seq {workload.seq_len}", leave=True,
        )

    def _advance(self, bar, row, deadline: float | None) -> None:
        if bar is None:
            return
        bar.update(1)
        best = self._best_so_far(row.study_id)
        postfix = {}
        if best is not None:
            postfix["best"] = f"{best.value:.3g} {objectives.unit(self.options.objective)} {best.config.get('backend')} {best.config.get('precision', '')}"
        postfix["last"] = row.status if row.status != S.OK else f"{row.value:.3g}"
        if deadline is not None:
            postfix["left"] = f"{max(0, deadline - time.monotonic()) / 60:.1f} min"
        bar.set_postfix(postfix, refresh=True)

    def _best_so_far(self, study_id: int):
        best = None
        for t in self.store.trials(study_id):
            if t.status == S.OK and t.value is not None:
                if best is None or objectives.better(self.options.objective, t.value, best.value):
                    best = t
        return best

    def run(self, on_outcome: Callable[[StudyOutcome], None] | None = None) -> list[StudyOutcome]:
        outcomes = []
        per_study = self.options.budget_s / len(self.options.seq_lens) if self.options.budget_s else None
        for seq_len in self.options.seq_lens:
            outcome = self.tune(seq_len, per_study)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        return outcomes

    def close(self) -> None:
        self.store.close()
