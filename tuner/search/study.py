"""One tuning run: for each workload, an Optuna study whose trials are worker processes.

The order of writes is what makes a run resumable: a trial's row is committed to
the store *before* Optuna is told (tuner.search._reconcile), so when the tuner dies
at any point the next run settles what it left.

Measurement (docs/measurement.md): before each trial the machine is checked for
noise, and a trial timed while other processes used its CPUs is re-run (or marked
"noisy"); a short first measurement stops clearly slower configurations (pruned);
at the end the best few are re-measured in fresh processes, interleaved with the
stock default, and the winner is the best whose advantage is significant.

This module is the façade; each concern has its private module: judging a run
(_judge), rows before tells (_reconcile), which proposals run and what is queued
(_enqueue), re-measurements shared with `tuner verify` (_replay), the study's answer
(_outcome), what is shown while it runs (_progress).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tuner.errors import DiskFullError, UserError
from tuner.search import objective as objectives
from tuner.search._enqueue import EXPLORE_AFTER, SearchPolicy
from tuner.search._fleet import Joined
from tuner.search._journal import Journal, lost_server
from tuner.search._judge import MEASURED, NOT_COUNTED, Judge, Verdict
from tuner.search._options import TuneOptions, trial_timeout_for
from tuner.search._outcome import StudyOutcome, Where, finish
from tuner.search._progress import Progress
from tuner.search._reconcile import Recorder, now
from tuner.search._replay import Replay
from tuner.search._similar import SimilarMachines
from tuner.search.objective import space_objective
from tuner.search.quiet import QuietRunner, governor_warning
from tuner.search.racing import RACE, Racing
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.vocabulary import Objective, Strategy, config_key

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

# A study ends after this many proposals in a row that start no process.
MAX_CONSECUTIVE_DUPLICATES = 50


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
        ``warn`` receives warnings about the machine (default: stderr)."""
        from tuner.hardware import detect
        from tuner.model import DEFAULT_EVAL_TEXTS, parameter_count, resolve_model
        from tuner.space.loader import load_space_with
        from tuner.store import Store

        options.validate()
        self.options = options
        self._notes_to = warn  # where the study's notes go (default: stderr)
        self._optuna: Any = None  # Optuna's storage on the store's database, once its schema is checked
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
        if runner is None:
            from tuner.trial.forkserver import ForkServers
            from tuner.trial.runner import TrialRunner

            # The reference run and every trial get the same limit, scaled to the model unless one was given.
            timeout = options.trial_timeout_s or trial_timeout_for(parameter_count(self.model))
            runner = TrialRunner(
                self.model,
                self.machine,
                self.eval_texts,
                options.measure,
                timeout,
                servers=ForkServers() if options.fork_servers else None,
            )
        self.runner = runner
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
            self._note,
        )
        # --join: one of several machines sharing the study (heartbeats, claims); None: alone.
        self.fleet = Joined(self.store, self.recorder, options.join_grace_s, self._note) if options.join else None

    def tune(self, seq_len: int, budget_s: float | None) -> StudyOutcome:
        """Run (or resume) the study of one sequence length and decide its winner."""
        import optuna

        from tuner.search.pruning import BestSoFarPruner
        from tuner.search.strategy import make_sampler, warm_start

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        workload = S.Workload(seq_len=seq_len, batch=opts.batch)
        storage = self.optuna_storage or self._optuna_tables()  # its schema checked before anything is written
        if self.fleet is not None and self.optuna_storage is None:
            storage = self.fleet.storage(self.store.url)  # the same tables, with heartbeats
        name = self.study_name(workload)
        record = self.store.get_or_create_study(
            self.machine_id,
            self.model_pk,
            seq_len,
            opts.batch,
            opts.objective,
            self.space.content_hash(),
            name,
            {
                "trials": opts.trials,
                "budget_s": opts.budget_s,
                "guard": vars(opts.guard),
                "strategy": opts.strategy,
                "default": self.space.default_config(),
                "max_memory_mb": opts.max_memory_mb,
                "model_revision": self.model.revision,
            },  # the commit of a hub model (None otherwise)
        )
        self._announce(record)
        structured = opts.strategy == Strategy.STRUCTURED
        first = warm_start(self.space) if structured else [self.space.default_config()]
        first += [c for c in opts.seed_configs if c not in first]
        first = self.similar.first(first, record)
        pruner = (
            BestSoFarPruner(opts.prune_margin)
            if opts.prune and opts.objective != Objective.PARETO
            else optuna.pruners.NopPruner()
        )  # Optuna prunes single-objective studies only
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=objectives.directions(opts.objective),
            sampler=make_sampler(opts.strategy, opts.seed, opts.trials, len(first)),
            pruner=pruner,
            load_if_exists=True,
        )
        journal = Journal(self.store, name, opts.db_retry_s, self.progress.warn)
        journal.replay(record.id)  # rows a run kept while the server was away (tuner.search._journal)
        self.recorder.write = journal.record
        (self.fleet or self.recorder).reconcile(study, record.id, self.space)
        reruns = self.recorder.reruns(record.id)  # interrupted configurations: each once, before anything else
        if self.fleet is not None:
            self.fleet.hold(record.id, "start", "queue the first configurations")  # one worker queues them
        queued = study.get_trials(deepcopy=False)
        if len(queued) < len(first) and all(t.state == optuna.trial.TrialState.WAITING for t in queued):
            # The stock default first (every speedup is over it), then the warm start (the
            # rest of it, when a run was stopped while it queued them).
            for config in first[len(queued) :]:
                study.enqueue_trial(self.space.params_for(config))
        if self.fleet is not None:
            self.fleet.release(record.id, "start")
        reference = self._reference(workload)
        space_size = self.space.size()
        if opts.noise_check:
            warning = governor_warning(self.machine.available_cpus)
            if warning:
                self.progress.warn(warning)

        measured = {config_key(r.config): r for r in self.store.trials(record.id) if r.status not in NOT_COUNTED}
        counted = len(measured)
        deadline = time.monotonic() + budget_s if budget_s else None
        self.progress.start(workload, counted)
        racing = Racing.resume(
            Replay(self.quiet, self.store, record.id, workload, reference, self.judge, opts.measure, RACE),
            opts.race_every,
        )
        consecutive_duplicates = 0
        rng = random.Random(opts.seed)
        stop_reason = "trial budget reached"
        try:
            while True:
                if self.fleet is not None:  # every worker's trials count; wait while the rest runs elsewhere
                    measured, counted = self.fleet.sync(study, record.id, opts.trials)
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
                rerun = reruns.pop(0) if reruns else None
                if rerun is None and structured and counted >= len(first):
                    self.policy.enqueue_local(study, racing.view(measured))  # leaders ranked as raced
                trial = self._ask(study, rerun)
                if self.fleet is not None:
                    self.fleet.running(trial)  # its heartbeat, until the next
                config = self.space.sample(trial)
                trial.set_user_attr("config", config)
                earlier = measured.get(config_key(config))
                dominated = None if earlier is not None else self.policy.dominated(config, measured, len(first))
                if earlier is not None or dominated is not None:
                    consecutive_duplicates += 1
                    if earlier is not None:
                        self.recorder.record_duplicate(study, trial, record.id, config, earlier)
                    elif dominated is not None:
                        self.recorder.record_skipped(study, trial, record.id, config, *dominated)
                    if consecutive_duplicates % EXPLORE_AFTER == 0:
                        self.policy.enqueue_unexplored(study, measured, len(first), rng)
                    continue
                consecutive_duplicates = 0
                threshold = (
                    racing.threshold(measured, pruner.threshold(study), opts.prune_margin)
                    if isinstance(pruner, BestSoFarPruner)
                    else None
                )
                started = now()
                result, plan = self.quiet.run(
                    workload,
                    config,
                    reference,
                    f"trial {trial.number}",
                    replace(opts.measure, prune_above_ms=threshold),
                )
                full = self._disk_full(result)
                if full is not None:  # not the configuration's fault: it runs first once there is space
                    self.recorder.record_interrupted(study, trial, record.id, config, started, full)
                    raise DiskFullError.from_line(full)
                row = self.recorder.record_measured(study, trial, record.id, config, result, plan, started)
                measured[config_key(config)] = row
                counted += 1
                if self.progress.active:
                    self.progress.advance(row, objectives.best(self.store.trials(record.id), opts.objective), deadline)
                if racing.due(counted) and (deadline is None or time.monotonic() < deadline):
                    racing.step(measured)  # the leaders again, in fresh processes (not counted as trials)
        finally:
            self.progress.close()
        replay = Replay(self.quiet, self.store, record.id, workload, reference, self.judge, opts.measure, "finalist")

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

        return decide() if self.fleet is None else self.fleet.finish(study, record.id, decide)  # once, shared

    def study_name(self, workload: S.Workload) -> str:
        """The Optuna study (and store study) name of ``workload`` in this tuning run."""
        return ":".join(
            [
                "tuner",
                self.machine.fingerprint,
                self.model.content_hash[:16],
                f"seq{workload.seq_len}",
                f"batch{workload.batch}",
                self.options.objective,
                self.space.content_hash()[:12],
                hashlib.sha256("\n".join(self.eval_texts).encode()).hexdigest()[:8],
                *self._verdict_key(),
            ]
        )

    def _verdict_key(self) -> list[str]:
        """What else decides a trial's verdict, in the study's name: the accuracy guard
        and the memory limit (nothing when they are the defaults, so a study's name is
        what it was before they were part of it)."""
        guard, limit = self.options.guard, self.options.max_memory_mb
        if guard == Guard() and limit is None:
            return []
        judged = json.dumps({"guard": vars(guard), "max_memory_mb": limit}, sort_keys=True)
        return ["judged-" + hashlib.sha256(judged.encode()).hexdigest()[:8]]

    def _optuna_tables(self) -> Any:
        if self._optuna is None:
            self._optuna = self.store.optuna_storage()  # StoreError (one line) for a schema it cannot use
        return self._optuna

    def _ask(self, study: Any, rerun: dict[str, Any] | None) -> Any:
        """The next trial: an interrupted configuration ahead of everything, else Optuna's."""
        if rerun is not None:
            try:
                params = self.space.params_for(rerun)
            except (UserError, ValueError, KeyError):  # no longer a configuration of this space
                params = None
            if params is not None:
                return self.recorder.ask_for(study, params)
        return study.ask()

    def _reference(self, workload: S.Workload) -> str:
        """The fp32 reference's outputs; a full disk said as one."""
        try:
            return str(self.runner.reference(workload))
        except UserError as exc:
            full = DiskFullError.in_reason(str(exc).split(" failed: ", 1)[-1], self._cache_dir())
            if full is not None:
                raise DiskFullError.from_line(full) from None
            raise

    def _disk_full(self, result: S.TrialResult) -> str | None:
        """The line that says the disk is full, when the worker failed for that."""
        if result.status not in (S.ERROR, S.CRASHED):
            return None
        return DiskFullError.in_reason(result.reason, self._cache_dir())

    def _cache_dir(self) -> str:
        from tuner import paths

        return str(getattr(self.runner, "cache_dir", None) or paths.cache_dir())

    def _announce(self, record: Any) -> None:
        """Say whether the study resumes a stored one, or starts anew beside others of the
        same workload (and what differs from the latest of them)."""
        seq = f"seq {record.seq_len}"
        if record.created != record.updated:  # get_or_create_study found it: this run resumes it
            self._note(
                f"{seq}: resuming study {record.id} ({record.n_trials} trial{'s' if record.n_trials != 1 else ''} "
                "stored; --trials and "
                "--budget count them; `tuner auto --help` says which options start a new study)"
            )
            return
        others = [
            s
            for s in self.store.studies(fingerprint=self.machine.fingerprint, model=self.model.content_hash)
            if s.id != record.id and s.seq_len == record.seq_len and s.batch == record.batch
        ]
        if not others:
            return
        latest = others[-1]
        differs = []
        if latest.objective != record.objective:
            differs.append(f"objective {record.objective} (was {latest.objective})")
        if latest.space_hash != record.space_hash:
            differs.append("the search space (--backends, --space or the space files)")
        for key, label in (("guard", "the accuracy guard"), ("max_memory_mb", "--max-memory")):
            if (latest.settings or {}).get(key) != (record.settings or {}).get(key):
                differs.append(
                    f"{label} {self._setting(record.settings.get(key))} "
                    f"(was {self._setting((latest.settings or {}).get(key))})"
                )
        why = "; ".join(differs) or "the guard sentences or the model's files"
        self._note(
            f"{seq}: a new study {record.id}, as {why} differ from study {latest.id}, which stays in `tuner history`"
        )

    @staticmethod
    def _setting(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        return "none" if value is None else str(value)

    def _note(self, message: str) -> None:
        if self._notes_to is not None:
            self._notes_to(message)
        else:
            print(f"tuner: {message}", file=sys.stderr)

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
