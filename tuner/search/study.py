"""One tuning run: for each workload, an Optuna study whose trials are worker processes.

The order of writes is what makes a run resumable: a trial's row is committed to
the store *before* Optuna is told (tuner.search._reconcile), so when the tuner dies
at any point the next run settles what it left.

Measurement (docs/measurement.md): before each trial the machine is checked for
noise, and a trial timed while other processes used its CPUs is re-run (or marked
"noisy"); a short first measurement stops clearly slower configurations (pruned);
at the end the best few are re-measured in fresh processes, interleaved with the
stock default, and the winner is the best whose advantage is significant.

This module is the façade; each concern has its private module: which stored study
a run continues (_identity), judging a run (_judge), rows before tells and what a
killed run left (_reconcile), which proposals run and what is queued (_enqueue), when
the study stops (_budget), re-measurements shared with `tuner verify` (_replay), the
study's answer (_outcome), what is shown while it runs (_progress), machines sharing
the study (_fleet, _heartbeat), a database server that goes away (_journal), a full
disk (_disk).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tuner.errors import DiskFullError
from tuner.search import objective as objectives
from tuner.search._budget import Budget
from tuner.search._disk import disk_full, reference
from tuner.search._enqueue import SearchPolicy
from tuner.search._fleet import fleet_for
from tuner.search._identity import announce, study_name, study_settings
from tuner.search._journal import Journal, lost_server
from tuner.search._judge import MEASURED, NOT_COUNTED, Judge, Verdict
from tuner.search._options import TuneOptions, trial_runner
from tuner.search._outcome import StudyOutcome, Where, finish
from tuner.search._progress import Progress
from tuner.search._reconcile import Recorder, now
from tuner.search._replay import Replay
from tuner.search._similar import SimilarMachines
from tuner.search.objective import space_objective
from tuner.search.quiet import QuietRunner, governor_warning
from tuner.search.racing import RACE, Racing
from tuner.trial import spec as S
from tuner.vocabulary import Strategy, config_key

__all__ = [
    "MEASURED",
    "NOT_COUNTED",
    "Judge",
    "Replay",
    "SearchPolicy",
    "StudyOutcome",
    "TuneOptions",
    "Tuner",
    "Verdict",
    "space_objective",
]


class Tuner:
    """Set up once (model, machine, store, space), then tune each workload in turn."""

    def __init__(
        self,
        options: TuneOptions,
        progress: bool = True,
        runner: Any | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """``runner`` replaces the process runner (benchmarks replay a measured grid);
        ``warn`` receives warnings about the machine and the study's notes (default: stderr)."""
        from tuner.hardware import detect
        from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
        from tuner.space.loader import load_space_with
        from tuner.store import Store

        options.validate()
        self.options = options
        self.progress = Progress(progress, options.trials, options.objective, warn)
        self.model = resolve_model(options.model)
        self.machine = detect()
        self.space = options.space or load_space_with(
            self.machine, options.space_files, backends=options.backends, objective=space_objective(options.objective)
        )
        self.store = Store.open(options.db_url)
        self.eval_texts = options.eval_texts or list(DEFAULT_EVAL_TEXTS)
        self.machine_id = self.store.upsert_machine(
            self.machine.to_dict(),
            self.machine.fingerprint,
            self.machine.hardware_fingerprint,
            self.machine.software_fingerprint,
            self.machine.hostname,
        )
        self.runner = runner if runner is not None else trial_runner(options, self.model, self.machine, self.eval_texts)
        self.optuna_storage: Any = None  # None: Optuna's tables in the store's database
        self.quiet = QuietRunner(
            self.runner, options.noise_check, options.noise_retries, self.progress.warn, options.noise_wait_s
        )
        self.model_pk = self.store.upsert_model(
            self.model.model_id, self.model.content_hash, self.model.path, self.model.task
        )
        self.judge = Judge(options.objective, options.batch, self.model.task, options.guard, options.max_memory_mb)
        self.recorder = Recorder(self.store, self.judge)
        self.policy = SearchPolicy(self.space, options.objective, options.strategy, options.skip_dominated)
        # A new study first measures what the most similar machines found best (docs/fleet.md).
        self.similar = SimilarMachines(
            self.store,
            self.machine,
            self.model.content_hash,
            self.space,
            options.objective,
            options.batch,
            options.similar_start,
            self.progress.note,
        )
        # --join: one of several machines sharing the study (heartbeats, claims); Alone otherwise.
        self.fleet = fleet_for(options.join, self.store, self.recorder, options.join_grace_s, self.progress.note)

    def tune(self, seq_len: int, budget_s: float | None) -> StudyOutcome:
        """Run (or resume) the study of one sequence length and decide its winner."""
        import optuna

        from tuner.search.pruning import BestSoFarPruner, make_pruner
        from tuner.search.strategy import make_sampler

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        workload = S.Workload(seq_len=seq_len, batch=opts.batch)
        storage = self.optuna_storage or self.fleet.storage()  # its schema checked before anything is written
        name = self.study_name(workload)
        settings = study_settings(opts, self.space.default_config(), self.model.revision)
        record = self.store.get_or_create_study(
            self.machine_id,
            self.model_pk,
            seq_len,
            opts.batch,
            opts.objective,
            self.space.content_hash(),
            name,
            settings,
        )
        announce(self.store, record, self.machine.fingerprint, self.model.content_hash, self.progress.note)
        first = self.similar.first(self.policy.first(opts.seed_configs), record)
        pruner = make_pruner(opts.prune, opts.prune_margin, opts.objective)
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=objectives.directions(opts.objective),
            sampler=make_sampler(opts.strategy, opts.seed, opts.trials, len(first)),
            pruner=pruner,
            load_if_exists=True,
        )
        # What an earlier run left: rows it kept while the server was away, trials it was killed in.
        journal = Journal(self.store, name, opts.db_retry_s, self.progress.warn)
        journal.replay(record.id)
        self.recorder.write = journal.record
        self.fleet.reconcile(study, record.id, self.space)
        reruns = self.recorder.reruns(record.id)  # interrupted configurations: each once, before anything else
        self.fleet.queue_first(record.id, lambda: self.policy.enqueue_first(study, first))  # a fleet's by one worker
        ref = reference(self.runner, workload)
        if opts.noise_check:
            warning = governor_warning(self.machine.available_cpus)
            if warning:
                self.progress.warn(warning)

        measured = {config_key(r.config): r for r in self.store.trials(record.id) if r.status not in NOT_COUNTED}
        counted = len(measured)
        budget = Budget(opts.trials, budget_s, self.space.size())
        self.progress.start(workload, counted)
        racing = Racing.resume(
            Replay(self.quiet, self.store, record.id, workload, ref, self.judge, opts.measure, RACE),
            opts.race_every,
        )
        structured = opts.strategy == Strategy.STRUCTURED
        rng = random.Random(opts.seed)
        try:
            while True:
                # A fleet's trials count whichever worker ran them; it waits while the rest runs elsewhere.
                measured, counted = self.fleet.sync(study, record.id, opts.trials, (measured, counted))
                stop_reason = budget.stop_reason(measured, counted)
                if stop_reason is not None:
                    break
                rerun = reruns.pop(0) if reruns else None
                if rerun is None and structured and counted >= len(first):
                    self.policy.enqueue_local(study, racing.view(measured))  # leaders ranked as raced
                trial = self.recorder.next_trial(study, self.space, rerun)
                self.fleet.running(trial)  # a fleet's heartbeat, until the next
                config = self.space.sample(trial)
                trial.set_user_attr("config", config)
                earlier = measured.get(config_key(config))
                dominated = None if earlier is not None else self.policy.dominated(config, measured, len(first))
                if earlier is not None or dominated is not None:
                    if earlier is not None:
                        self.recorder.record_duplicate(study, trial, record.id, config, earlier)
                    elif dominated is not None:
                        self.recorder.record_skipped(study, trial, record.id, config, *dominated)
                    if budget.not_run():
                        self.policy.enqueue_unexplored(study, measured, len(first), rng)
                    continue
                budget.ran()
                threshold = (
                    racing.threshold(measured, pruner.threshold(study), opts.prune_margin)
                    if isinstance(pruner, BestSoFarPruner)
                    else None
                )
                started = now()
                measure = replace(opts.measure, prune_above_ms=threshold)
                result, plan = self.quiet.run(workload, config, ref, f"trial {trial.number}", measure)
                full = disk_full(self.runner, result)
                if full is not None:  # not the configuration's fault: it runs first once there is space
                    self.recorder.record_interrupted(study, trial, record.id, config, started, full)
                    raise DiskFullError.from_line(full)
                row = self.recorder.record_measured(study, trial, record.id, config, result, plan, started)
                measured[config_key(config)] = row
                counted += 1
                if self.progress.active:
                    best = objectives.best(self.store.trials(record.id), opts.objective)
                    self.progress.advance(row, best, budget.deadline)
                if racing.due(counted) and budget.time_left():
                    racing.step(measured)  # the leaders again, in fresh processes (not counted as trials)
        finally:
            self.progress.close()
        replay = Replay(self.quiet, self.store, record.id, workload, ref, self.judge, opts.measure, "finalist")

        def decide() -> StudyOutcome:
            return finish(
                self.store,
                opts,
                Where(self.machine_id, self.model_pk),
                record.id,
                workload,
                stop_reason,
                self.space.default_config(),
                replay,
                self.progress,
            )

        return self.fleet.finish(study, record.id, decide)  # a fleet's once, by one worker

    def study_name(self, workload: S.Workload) -> str:
        """The Optuna study (and store study) name of ``workload`` in this tuning run."""
        return study_name(self.options, workload, self.machine, self.model, self.space, self.eval_texts)

    def run(self, on_outcome: Callable[[StudyOutcome], None] | None = None) -> list[StudyOutcome]:
        """Tune every sequence length of the options in turn (the time budget split evenly)."""
        outcomes = []
        per_study = self.options.budget_s / len(self.options.seq_lens) if self.options.budget_s else None
        for seq_len in self.options.seq_lens:
            with lost_server(self.store):  # one line, not a traceback, when the server goes away
                outcome = self.tune(seq_len, per_study)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        return outcomes

    def close(self) -> None:
        if hasattr(self.runner, "close"):
            self.runner.close()  # its fork servers
        self.store.close()
