"""One tuning run: for each workload, an Optuna study whose trials are worker processes.

The order of writes is what makes a run resumable: a trial's row is committed to
the store *before* Optuna is told, so when the tuner dies at any point the next run
can reconcile: a RUNNING Optuna trial with a row is told from the row; one without a
row was cut short, is recorded as interrupted, and its parameters are queued again.

Measurement (docs/measurement.md): before each trial the machine is checked for
noise, and a trial timed while other processes used its CPUs is re-run (or marked
"noisy"); a short first measurement stops clearly slower configurations (pruned);
at the end the best few are re-measured in fresh processes, interleaved with the
stock default, and the winner is the best whose advantage is significant.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tuner.errors import UserError
from tuner.search import finalists as F
from tuner.search import objective as objectives
from tuner.search.quiet import QuietRunner
from tuner.search.strategy import Measured
from tuner.store import trial_fields
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.trial.launch import RuntimePlan
from tuner.trial.probe import differences
from tuner.trial.runner import TrialRunner
from tuner.vocabulary import (
    DEFAULT_FINALIST_ROUNDS,
    DEFAULT_FINALISTS,
    DEFAULT_PRUNE_MARGIN,
    DEFAULT_STRATEGY,
    STRATEGIES,
    config_key,
)

# Statuses that do not consume the trial budget: a duplicate re-uses a measurement,
# an interrupted trial is queued again.
NOT_COUNTED = (S.DUPLICATE, S.INTERRUPTED, S.SKIPPED)
MAX_CONSECUTIVE_DUPLICATES = 50
# After this many proposals in a row that start no process (duplicates, skipped
# backends), a random unmeasured configuration is queued (Tuner._enqueue_unexplored).
EXPLORE_AFTER = 3
# Structured search: a backend this much slower than the best is not run again when
# its trials also cost this many times a typical trial (see Tuner._dominated).
EXPENSIVE_SLOWDOWN = 1.5
EXPENSIVE_COST = 4.0
# Statuses with a measured latency that Optuna is told as a value (or, pruned, an
# intermediate value).
MEASURED = (S.OK, S.REJECTED, S.PRUNED)


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
    space: Any | None = None  # a Space to search instead of search_spaces/ (benchmarks restrict it)
    backends: list[str] | None = None  # only these backends of search_spaces/ (None: all)
    seed_configs: list[dict] = field(default_factory=list)  # measured right after the warm start
    strategy: str = DEFAULT_STRATEGY
    max_memory_mb: float | None = None  # constraint: peak RSS of the worker
    prune: bool = True  # early stopping after a short first measurement
    prune_margin: float = DEFAULT_PRUNE_MARGIN  # "clearly slower": a short median this much above the best
    finalists: int = DEFAULT_FINALISTS  # re-measured at the end (0: the search's best wins)
    finalist_rounds: int = DEFAULT_FINALIST_ROUNDS  # fresh processes per finalist, and for the default
    noise_check: bool = True  # check the machine before each trial
    noise_retries: int = 1  # re-runs of a trial timed while the machine was noisy
    noise_wait_s: float = 3.0  # how long a run waits for a busy machine to calm down
    record_best: bool = True  # False: a benchmark's study, which must not replace the stored winner
    # Structured search, latency objectives: once the warm start has measured every
    # backend, a proposal for a backend whose every measurement is at least this many
    # times the best feasible median is not run (stored "skipped"; 0 disables).
    skip_dominated: float = 3.0
    # Torch-family trials forked by preloaded fork servers (tuner.trial.forkserver);
    # False: every worker starts cold.
    fork_servers: bool = True


@dataclass
class StudyOutcome:
    workload: S.Workload
    objective: str
    trials: list  # TrialRecord, ordered by number
    winner: object | None  # TrialRecord
    default: object | None  # TrialRecord of the stock default
    speedup: float | None
    stop_reason: str
    speedup_ci: Any | None = None  # tuner.search.stats.Speedup of the winner over the default
    decision: Any | None = None  # tuner.search.finalists.Decision (None: no finalists re-measured)
    pareto: list = field(default_factory=list)  # TrialRecords on the latency-throughput front



def space_objective(objective: str) -> str:
    """The objective whose space a study searches. A pareto study searches the
    throughput space (instances x cores each): there every trial measures both its
    per-call latency under load and its aggregate throughput, so configurations
    really trade one for the other; with one instance per trial, throughput would
    only be the inverse of latency and the front a single point."""
    return "throughput" if objective == "pareto" else objective


def _now() -> datetime:
    return datetime.now(UTC)


def _wall_s(row) -> float:
    if row.started_at is None or row.finished_at is None:
        return 0.0
    return (row.finished_at - row.started_at).total_seconds()


class Tuner:
    """Set up once (model, machine, store, space), then tune each workload in turn."""

    def __init__(
        self, options: TuneOptions, progress: bool = True, runner: Any | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """``runner`` replaces the process runner (benchmarks replay a measured grid);
        ``warn`` receives warnings about the machine (default: stderr)."""
        from tuner.hardware import detect
        from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
        from tuner.space import load_space
        from tuner.store import Store

        if options.objective not in objectives.OBJECTIVES:
            raise UserError(f"unknown objective {options.objective!r}; choose one of {', '.join(objectives.OBJECTIVES)}")
        if options.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {options.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if options.finalists and options.finalist_rounds < 3:
            raise UserError("finalists are re-measured in at least 3 fresh processes each; pass 3 or more rounds")
        self.options = options
        self.progress = progress
        self._warn_to = warn
        self._bar: Any = None
        self.model = resolve_model(options.model)
        self.machine = detect()
        self.space = options.space or load_space(self.machine, backends=options.backends,
                                                 objective=space_objective(options.objective))
        self.store = Store.open(options.db_url)
        self.eval_texts = options.eval_texts or list(DEFAULT_EVAL_TEXTS)
        self.machine_id = self.store.upsert_machine(
            self.machine.to_dict(),
            self.machine.fingerprint,
            self.machine.hardware_fingerprint,
            self.machine.software_fingerprint,
            self.machine.hostname,
        )
        if runner is None:
            from tuner.trial.forkserver import ForkServers

            runner = TrialRunner(self.model, self.machine, self.eval_texts, options.measure, options.trial_timeout_s,
                                 servers=ForkServers() if options.fork_servers else None)
        self.runner = runner
        self.optuna_storage: Any = None  # None: Optuna's tables in the store's database
        self.quiet = QuietRunner(self.runner, options.noise_check, options.noise_retries, self._warn,
                                 options.noise_wait_s)
        self.model_pk = self.store.upsert_model(self.model.model_id, self.model.content_hash, self.model.path, self.model.task)

    # -- one workload -----------------------------------------------------------------

    def tune(self, seq_len: int, budget_s: float | None) -> StudyOutcome:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        workload = S.Workload(seq_len=seq_len, batch=opts.batch)
        name = self.study_name(workload)
        record = self.store.get_or_create_study(
            self.machine_id, self.model_pk, seq_len, opts.batch, opts.objective,
            self.space.content_hash(), name,
            {"trials": opts.trials, "budget_s": opts.budget_s, "guard": vars(opts.guard), "strategy": opts.strategy,
             "default": self.space.default_config(), "max_memory_mb": opts.max_memory_mb,
             "model_revision": self.model.revision},  # the commit of a hub model (None otherwise)
        )
        from tuner.search.pruning import BestSoFarPruner
        from tuner.search.strategy import make_sampler, warm_start

        first = warm_start(self.space) if opts.strategy == "structured" else [self.space.default_config()]
        first += [c for c in opts.seed_configs if c not in first]
        pareto = opts.objective == "pareto"
        pruner = (BestSoFarPruner(opts.prune_margin) if opts.prune and not pareto
                  else optuna.pruners.NopPruner())  # Optuna prunes single-objective studies only
        study = optuna.create_study(
            storage=self.optuna_storage or optuna.storages.RDBStorage(self.store.url),
            study_name=name,
            directions=objectives.directions(opts.objective),
            sampler=make_sampler(opts.strategy, opts.seed, opts.trials, len(first)),
            pruner=pruner,
            load_if_exists=True,
        )
        self._reconcile(study, record.id)
        if not study.trials:
            # The stock default first (every speedup is over it), then the warm start.
            for config in first:
                study.enqueue_trial(self.space.params_for(config))
        reference = self.runner.reference(workload)
        space_size = self.space.size()
        if opts.noise_check:
            self._warn_governor()

        rows = {r.number: r for r in self.store.trials(record.id)}
        measured = {config_key(r.config): r for r in rows.values() if r.status not in NOT_COUNTED}
        counted = len(measured)
        deadline = time.monotonic() + budget_s if budget_s else None
        bar = self._progress_bar(workload, counted)
        consecutive_duplicates = 0
        rng = random.Random(opts.seed)
        stop_reason = "trial budget reached"
        try:
            while True:
                if opts.trials is not None and counted >= opts.trials:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stop_reason = "time budget reached"
                    break
                if len(measured) >= space_size:
                    stop_reason = "every configuration in the space measured"
                    break
                if consecutive_duplicates >= MAX_CONSECUTIVE_DUPLICATES:
                    stop_reason = "the sampler only proposes measured configurations"
                    break
                if opts.strategy == "structured" and counted >= len(first):
                    self._enqueue_local(study, measured)
                trial = study.ask()
                config = self.space.sample(trial)
                trial.set_user_attr("config", config)
                earlier = measured.get(config_key(config))
                dominated = None if earlier is not None else self._dominated(config, measured, len(first))
                if earlier is not None or dominated is not None:
                    consecutive_duplicates += 1
                    if earlier is not None:
                        self._record_duplicate(study, trial, record.id, config, earlier)
                    else:
                        self._record_skipped(study, trial, record.id, config, *dominated)
                    if consecutive_duplicates % EXPLORE_AFTER == 0:
                        self._enqueue_unexplored(study, measured, len(first), rng)
                    continue
                consecutive_duplicates = 0
                threshold = pruner.threshold(study) if isinstance(pruner, BestSoFarPruner) else None
                row = self._run_trial(study, trial, record.id, workload, config, reference, threshold)
                measured[config_key(config)] = row
                counted += 1
                self._advance(bar, row, deadline)
        finally:
            if bar is not None:
                bar.close()
            self._bar = None
        return self._finish(record.id, workload, stop_reason, reference)

    def study_name(self, workload: S.Workload) -> str:
        """The Optuna study (and store study) name of ``workload`` in this tuning run."""
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
                if row.status == S.DUPLICATE:  # told from the trial it repeats
                    row = next((r for r in self.store.trials(study_id) if r.status not in NOT_COUNTED
                                and config_key(r.config) == config_key(row.config)), row)
                self._tell(study, trial, row)
                continue
            config = frozen.user_attrs.get("config", {})
            self.store.record_trial(
                study_id, frozen.number, config=config, status=S.INTERRUPTED,
                reason="the tuner stopped during this trial; its configuration was queued again",
                started_at=frozen.datetime_start, finished_at=_now(),
            )
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(frozen.params, skip_if_exists=False)

    def _tell(self, study, trial, row) -> None:
        """Tell Optuna a stored result. The accuracy guard and the memory limit are
        constraints, not failures, so TPE learns where they bite; a pruned trial is
        told with its short first measurement as the intermediate value."""
        from optuna.trial import TrialState

        from tuner.search.pruning import FEASIBLE_ATTR, MEDIAN_ATTR

        opts = self.options
        if row.status not in MEASURED or row.median_ms is None:
            study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr(MEDIAN_ATTR, row.median_ms)
        trial.set_user_attr(FEASIBLE_ATTR, row.status == S.OK)
        accuracy = opts.guard.violation(self.model.task, row.accuracy) if row.accuracy else 0.0
        trial.set_constraint("accuracy", accuracy)
        trial.set_constraint("memory", self._memory_violation(row.peak_rss_mb))
        if row.status == S.PRUNED:
            trial.report(row.median_ms, 0)
            trial.should_prune()  # the pruner agrees: the worker stopped at its threshold
            study.tell(trial, state=TrialState.PRUNED)
        elif opts.objective == "pareto":
            study.tell(trial, [row.median_ms, row.throughput])
        else:
            study.tell(trial, row.value)

    def _memory_violation(self, peak_rss_mb: float | None) -> float:
        limit = self.options.max_memory_mb
        if not limit or peak_rss_mb is None:
            return 0.0
        return max(0.0, (peak_rss_mb - limit) / limit)

    # -- noise ------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        if self._warn_to is not None:
            self._warn_to(message)
        elif self._bar is not None:
            self._bar.write(f"warning: {message}", file=sys.stderr)
        else:
            print(f"warning: {message}", file=sys.stderr)

    def _warn_governor(self) -> None:
        from tuner.trial.noise import governors

        found = governors(self.machine.available_cpus)
        slow = sorted({g for g in found.values() if g != "performance"})
        if slow:
            self._warn(f"CPU frequency governor is {', '.join(slow)}: the clock may change between trials; "
                       "`cpupower frequency-set -g performance` pins it")

    # -- references and trials ----------------------------------------------------------

    def _run_trial(self, study, trial, study_id: int, workload: S.Workload, config: dict, reference: str,
                   prune_above_ms: float | None = None):
        started = _now()
        measure = replace(self.options.measure, prune_above_ms=prune_above_ms)
        result, plan = self.quiet.run(workload, config, reference, f"trial {trial.number}", measure)
        status, reason, value = self._judge(result, config, plan)
        number = trial.number
        fields = {**trial_fields(result), "status": status, "reason": reason}
        if status == S.OK:
            fields["stderr_tail"] = ""  # keep the tail only where it explains something
        if result.stats.get("median"):
            fields["throughput"] = objectives.throughput(result.stats, self.options.batch)
        self.store.record_trial(
            study_id, number, config=config, value=value,
            accuracy_ok=self.options.guard.check(self.model.task, result.accuracy) is None if result.accuracy else None,
            started_at=started, finished_at=_now(), **fields,
        )
        row = self.store.trial(study_id, number)
        self._tell(study, trial, row)
        return row

    def _judge(self, result: S.TrialResult, config: dict, plan: RuntimePlan) -> tuple[str, str | None, float | None]:
        """The trial's status: a worker failure, invalid settings, stopped early, below
        the accuracy guard or above the memory limit, or ok."""
        if result.status not in (S.OK, S.PRUNED):
            return result.status, result.reason, None
        problems = differences({"cpus": plan.cpus, "threads": config.get("threads")}, result.effective)
        if problems:
            return S.INVALID, "; ".join(problems), None
        if result.status == S.PRUNED:
            return S.PRUNED, result.reason, None
        value = objectives.value_of(self.options.objective, result.stats, self.options.batch)
        below = []
        accuracy = self.options.guard.check(self.model.task, result.accuracy)
        if accuracy:
            below.append(f"below the accuracy guard: {accuracy}")
        limit = self.options.max_memory_mb
        if limit and result.peak_rss_mb is not None and result.peak_rss_mb > limit:
            below.append(f"peak memory {result.peak_rss_mb:.0f} MB above --max-memory {limit:.0f} MB")
        if below:
            return S.REJECTED, "; ".join(below), value
        return S.OK, None, value

    def _dominated(self, config: dict, measured: dict, warm_start_size: int) -> tuple[str, float] | None:
        """(why, the backend's best median) when ``config``'s backend is not worth a
        process. Backends differ by several times, the knobs a search tunes within one
        by far less (threads: up to the core count), so once the warm start has
        measured every backend, a backend whose every trial took ``skip_dominated``
        times the best feasible median cannot catch up; nor can one EXPENSIVE_SLOWDOWN
        times slower whose trials cost EXPENSIVE_COST times a typical trial (a
        torch.compile trial compiles for a minute): the budget goes where it can pay."""
        opts = self.options
        if (opts.strategy != "structured" or not opts.skip_dominated or opts.objective not in ("p50", "p90", "p99")
                or len(measured) < warm_start_size):
            return None
        timed = [r for r in measured.values() if r.status in MEASURED and r.median_ms]
        feasible = [r.median_ms for r in timed if r.status == S.OK]
        own = [r for r in timed if r.config.get("backend") == config["backend"]]
        if not feasible or not own:
            return None
        best, fastest_own = min(feasible), min(r.median_ms for r in own)
        slowdown = fastest_own / best
        cost = statistics.mean(_wall_s(r) for r in own) / max(statistics.median(_wall_s(r) for r in timed), 1e-3)
        if slowdown >= opts.skip_dominated:
            because = f"skipped from {opts.skip_dominated:g}x"
        elif slowdown >= EXPENSIVE_SLOWDOWN and cost >= EXPENSIVE_COST:
            because = f"and its trials cost {cost:.0f}x a typical one"
        else:
            return None
        why = (f"not run: every {config['backend']} trial so far took at least {slowdown:.1f}x the best median "
               f"({fastest_own:.2f} vs {best:.2f} ms; {because})")
        return why, fastest_own

    def _worth_running(self, measured: dict, warm_start_size: int) -> list[str]:
        """The backends not dominated (Tuner._dominated) by what is measured so far."""
        return [b for b in self.space.backends if self._dominated({"backend": b}, measured, warm_start_size) is None]

    def _enqueue_local(self, study, measured: dict) -> None:
        """Structured search after the warm start: queue the local search's next
        configuration (tuner.search.strategy.next_local) unless one is queued already;
        when it has none left, TPE proposes."""
        from optuna.trial import TrialState

        from tuner.search.strategy import next_local

        objective = self.options.objective
        if objective == "pareto" or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        worth = self._worth_running(measured, 0)
        feasible = [r for r in measured.values() if r.status == S.OK and r.value is not None
                    and r.config["backend"] in worth]
        feasible.sort(key=lambda r: r.value, reverse=objectives.direction(objective) == "maximize")
        done = [self._as_measured(r) for r in measured.values()]
        config = next_local(self.space, [(r.config, r.value) for r in feasible], done,
                            lambda a, b: objectives.better(objective, a, b))
        if config is not None:
            study.enqueue_trial(self.space.params_for(config))

    def _as_measured(self, row) -> Measured:
        """A trial as the local search sees it: "rejected" only below the accuracy guard
        (a configuration over --max-memory is as good as failed), the accuracy figures
        as the signature of what it computed."""
        status = "over_memory" if row.status == S.REJECTED and row.accuracy_ok else row.status
        numerics = (tuple(sorted((k, round(v, 6)) for k, v in row.accuracy.items() if isinstance(v, (int, float))))
                    if row.accuracy and row.status in (S.OK, S.REJECTED) else None)
        return Measured(row.config, status, row.value if status in (S.OK, S.REJECTED) else None, numerics)

    def _enqueue_unexplored(self, study, measured: dict, warm_start_size: int, rng: random.Random) -> None:
        """Queue a random configuration not measured yet (of a backend still worth
        running): a sampler that keeps proposing what it has measured has converged
        on its model of the space, and without this the study would stop there, with
        budget left and points unseen."""
        backends = self._worth_running(measured, warm_start_size)
        for _ in range(200):
            config = self.space.random_config(rng, backends or None)
            if config_key(config) not in measured:
                study.enqueue_trial(self.space.params_for(config))
                return

    def _record_skipped(self, study, trial, study_id: int, config: dict, why: str, median_ms: float) -> None:
        """Stored, and told to Optuna as pruned at its backend's best median, so the
        sampler learns the region is slow without a process being started."""
        from optuna.trial import TrialState

        from tuner.search.pruning import FEASIBLE_ATTR, MEDIAN_ATTR

        self.store.record_trial(study_id, trial.number, config=config, status=S.SKIPPED, reason=why,
                                started_at=_now(), finished_at=_now())
        trial.set_user_attr(MEDIAN_ATTR, median_ms)
        trial.set_user_attr(FEASIBLE_ATTR, False)
        trial.set_constraint("accuracy", 0.0)
        trial.set_constraint("memory", 0.0)
        trial.report(median_ms, 0)
        study.tell(trial, state=TrialState.PRUNED)

    def _record_duplicate(self, study, trial, study_id: int, config: dict, earlier) -> None:
        self.store.record_trial(
            study_id, trial.number, config=config, status=S.DUPLICATE,
            reason=f"same configuration as trial {earlier.number}; its result was reused",
            value=earlier.value, started_at=_now(), finished_at=_now(),
        )
        self._tell(study, trial, earlier)

    # -- results ------------------------------------------------------------------------

    def _finish(self, study_id: int, workload: S.Workload, stop_reason: str, reference: str | None) -> StudyOutcome:
        opts = self.options
        objective = opts.objective
        trials = self.store.trials(study_id)
        front = self._store_pareto(study_id, trials)
        default_config = self.space.default_config()
        default_key = config_key(default_config)
        default = next((t for t in trials if t.status == S.OK and config_key(t.config) == default_key), None)
        if objective == "pareto":  # a front, not a winner
            self.store.set_study_status(study_id, "done")
            return StudyOutcome(workload, objective, trials, None, default, None, stop_reason, pareto=front)
        winner = None
        for t in trials:
            if t.status == S.OK and t.value is not None:
                if winner is None or objectives.better(objective, t.value, winner.value):
                    winner = t
        speedup = None
        ci = decision = None
        if winner is not None and opts.finalists > 0:
            decision = self._finalists(study_id, workload, reference, trials, default_config, default)
            winner, ci = decision.winner.trial, decision.speedup
            if ci is not None:
                speedup = ci.point
            elif winner is not None and default is not None and winner.id == default.id:
                speedup = 1.0  # nothing significantly better: the default is the answer
        elif winner is not None and default is not None and default.value and winner.value:
            ratio = default.value / winner.value
            speedup = 1.0 / ratio if objective == "throughput" else ratio
        if winner is not None and opts.record_best:
            metrics = {
                "median_ms": winner.median_ms, "p90_ms": winner.p90_ms, "p99_ms": winner.p99_ms,
                "value": winner.value, "accuracy": winner.accuracy, "trial_number": winner.number,
            }
            if decision is not None:
                metrics["finalist_rounds"] = opts.finalist_rounds
                metrics["decision"] = decision.summary
                remeasured = [r.stats["median"] for r in decision.winner.measured]
                if remeasured:
                    metrics["remeasured_median_ms"] = sorted(remeasured)[len(remeasured) // 2]
            self.store.set_best(
                self.machine_id, self.model_pk, workload.seq_len, workload.batch, objective,
                winner.id, winner.config, metrics, default.median_ms if default else None, speedup,
                speedup_low=ci.low if ci else None, speedup_high=ci.high if ci else None,
                significant=ci.significant if ci else (False if decision is not None else None),
                finalists=[v.to_dict() for v in decision.verdicts] if decision is not None else None,
            )
        self.store.set_study_status(study_id, "done")
        return StudyOutcome(workload, objective, trials, winner, default, speedup, stop_reason,
                            speedup_ci=ci, decision=decision, pareto=front)

    def _store_pareto(self, study_id: int, trials: list) -> list:
        """Store and return the feasible trials on the latency-throughput front."""
        from tuner.search.pareto import front, throughput_of

        points = []
        for t in trials:
            rate = throughput_of(t.median_ms, t.throughput, self.options.batch)
            if t.status == S.OK and t.median_ms is not None and rate is not None:
                points.append((t.number, t.median_ms, rate))
        numbers = front(points)
        self.store.set_pareto(study_id, numbers)
        by_number = {t.number: t for t in trials}
        return [by_number[n] for n in numbers]

    def _finalists(self, study_id: int, workload: S.Workload, reference: str | None, trials: list,
                   default_config: dict, default) -> F.Decision:
        """Re-measure the best few and the stock default in fresh processes, interleaved."""
        opts = self.options
        picks = F.pick(trials, opts.objective, opts.finalists, default_config)
        candidates = [F.Candidate("default", default_config, default)]
        candidates += [F.Candidate("candidate", t.config, t) for t in picks]
        self._reuse_replays(study_id, trials, candidates)
        measure = replace(opts.measure, prune_above_ms=None)
        total = len(candidates) * opts.finalist_rounds
        bar = self._progress_bar(workload, sum(len(c.runs) for c in candidates), total, "finalists")

        def run(candidate: F.Candidate, round_: int) -> S.TrialResult:
            name = "the stock default" if candidate.role == "default" else f"finalist trial {candidate.trial.number}"
            result, plan = self.quiet.run(workload, candidate.config, reference, f"{name}, round {round_ + 1}", measure)
            status, reason, _ = self._judge(result, candidate.config, plan)
            result.status, result.reason = status, reason
            stats = result.stats
            self.store.record_replay(
                study_id, kind="finalist", role=candidate.role, round=round_, config=candidate.config,
                status=status, trial_id=candidate.trial.id if candidate.trial is not None else None, reason=reason,
                median_ms=stats.get("median"), p90_ms=stats.get("p90"), p99_ms=stats.get("p99"),
                n_samples=int(stats["n"]) if "n" in stats else None, samples_ms=result.samples_ms,
                throughput=stats.get("throughput"), flags=result.flags or None, noise=result.noise or None,
            )
            if bar is not None:
                bar.update(1)
            return result

        try:
            F.remeasure(candidates, opts.finalist_rounds, run)
        finally:
            if bar is not None:
                bar.close()
            self._bar = None
        return F.decide(opts.objective, candidates[0], candidates[1:], opts.batch)

    def _reuse_replays(self, study_id: int, trials: list, candidates: list[F.Candidate]) -> None:
        """Rounds already re-measured since the study's last trial (a repeated or
        resumed run) count; only the missing rounds run again."""
        from tuner.trial.measure import summarize

        finished = [t.finished_at for t in trials if t.status not in NOT_COUNTED and t.finished_at is not None]
        since = max(finished) if finished else None
        by_key = {config_key(c.config): c for c in candidates}
        for replay in self.store.replays(study_id, kind="finalist"):
            candidate = by_key.get(config_key(replay.config))
            if candidate is None or (since is not None and replay.created < since):
                continue
            stats = summarize(replay.samples_ms) if replay.samples_ms else {}
            if replay.throughput is not None:
                stats["throughput"] = replay.throughput
            candidate.runs.append(S.TrialResult(status=replay.status, reason=replay.reason,
                                                 samples_ms=list(replay.samples_ms), stats=stats))

    # -- progress -----------------------------------------------------------------------

    def _progress_bar(self, workload: S.Workload, done: int, total: int | None = None, what: str = ""):
        if not self.progress:
            return None
        from tqdm import tqdm

        self._bar = tqdm(
            total=total if what else self.options.trials, initial=done, unit="run" if what else "trial",
            dynamic_ncols=True, desc=f"seq {workload.seq_len}{' ' + what if what else ''}", leave=True,
        )
        return self._bar

    def _advance(self, bar, row, deadline: float | None) -> None:
        if bar is None:
            return
        bar.update(1)
        best = self._best_so_far(row.study_id)
        postfix = {}
        if best is not None:
            postfix["best"] = f"{best.value:.3g} {objectives.unit(self.options.objective)} {best.config.get('backend')} {best.config.get('precision', '')}"
        postfix["last"] = row.status if row.status != S.OK else f"{row.value:.3g}"
        if row.flags:
            postfix["flags"] = ",".join(row.flags)
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
        if hasattr(self.runner, "close"):
            self.runner.close()  # its fork servers
        self.store.close()
