"""One `tuner nightly` run: plan, take the machine lock, work through the plan within
the budget, and keep a row of it in the store (docs/nightly.md).

Resumable: the run's row is written before the first step and its results after each
one, and every re-tune is a study of the tuner's own, which resumes by name. A run
killed half-way leaves its row "running"; the next run, holding the machine lock,
marks it interrupted, plans again from the store (what the killed run finished is
fresh now), and gives each study the killed run had started the trial target it had
then, so the study ends where that plan meant it to, without a trial run twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tuner.errors import LockedError, UserError
from tuner.nightly.config import NightlyConfig
from tuner.nightly.plan import CONFIRM, RETUNE, SKIP, VERIFY, PlanItem, make_plan, seed_configs
from tuner.nightly.status import Assessor, WinnerStatus

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.store import BestRecord, NightlyRunRecord, Store

# Exit statuses a scheduler acts on.
EXIT_OK, EXIT_ERROR, EXIT_WORSE = 0, 1, 3
# Measured trials per re-tune when neither --trials, the config nor the old study says.
DEFAULT_TRIALS = 30
# A short re-tune (the hardware is the same: a library, the space, the tuner or the
# weights changed) measures the warm start and the previous winner and finalists, then
# this many trials of local search around the best of them.
SHORT_EXTRA = 6
# A re-tuned winner whose objective is this much worse than the previous winner's "got slower".
SLOWER_MARGIN = 0.10
# Trial statuses that do not use a study's trial budget (as tuner.search counts them).
_NOT_COUNTED = ("duplicate", "interrupted", "skipped")
LOCK_POLL_S = 5.0


@dataclass
class RunSettings:
    db_url: str | None = None
    budget_s: float | None = None  # the whole run
    trials: int | None = None  # per study (--trials)
    rounds: int = 5  # verify: fresh processes per side (--rounds, else the config's)
    min_time: float = 1.0  # seconds each trial and replay is timed
    noise_wait_s: float = 3.0
    noise_retries: int = 1
    lock_timeout_s: float = 1800.0
    config: NightlyConfig = field(default_factory=NightlyConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_s": self.budget_s,
            "trials": self.trials,
            "rounds": self.rounds,
            "min_time": self.min_time,
            "config": self.config.path,
            "verify_after_s": self.config.verify_after_s,
        }


@dataclass
class Plan:
    statuses: list[WinnerStatus]
    items: list[PlanItem]
    previous_hosts: list[str]  # other hostnames whose machines count as this one's past


def plan_for(store: "Store", machine: "MachineInfo", settings: RunSettings, now: datetime | None = None) -> Plan:
    """The status table and the plan made from it (nothing is written)."""
    assessor = Assessor(store, machine)
    try:
        statuses = assessor.assess()
        items = make_plan(statuses, settings.config, assessor, now or datetime.now(UTC), settings.trials)
        return Plan(statuses, items, assessor.previous_hosts)
    finally:
        assessor.close()


def take_lock(timeout_s: float, what: str, say: Callable[[str], None]) -> Any:
    """The machine lock, waiting up to ``timeout_s``; LockedError after that."""
    from tuner.nightly._search import MachineLock

    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        lock = MachineLock(wait=False, what=what)
        try:
            return lock.__enter__()
        except LockedError as exc:
            if time.monotonic() >= deadline:
                waited = f" for {timeout_s / 60:.0f} min" if timeout_s else ""
                raise LockedError(f"{exc}; waited{waited} and gave up (--lock-timeout)") from None
            if not announced:
                say(f"waiting up to {timeout_s / 60:.0f} min for the machine lock: {exc}")
                announced = True
            time.sleep(min(LOCK_POLL_S, max(0.1, deadline - time.monotonic())))


class Nightly:
    """Carries out a plan on this machine; ``say`` gets the journal's lines."""

    def __init__(
        self, store: "Store", machine: "MachineInfo", settings: RunSettings, say: Callable[[str], None] = print
    ) -> None:
        self.store = store
        self.machine = machine
        self.settings = settings
        self.say = say
        self.results: list[dict[str, Any]] = []
        self.run_id: int | None = None
        self._resume: dict[str, dict[str, Any]] = {}  # item key -> what an interrupted run had started
        self._deadline: float | None = None

    # -- the run ------------------------------------------------------------------

    def run(self) -> tuple[int, "NightlyRunRecord"]:
        """Plan and carry out; the caller holds the machine lock. Returns the exit status and the run's row."""
        me = self.machine
        for old in self.store.interrupt_nightly_runs(me.hostname):
            self.say(f"run #{old.id} of {old.started:%Y-%m-%d %H:%M} UTC was interrupted; resuming its plan")
            for result in old.results or []:
                if result.get("outcome") == "running" and result.get("study"):
                    self._resume[result["key"]] = result
        planned = plan_for(self.store, me, self.settings)
        plan = planned.items
        machine_id = self.store.upsert_machine(
            me.to_dict(), me.fingerprint, me.hardware_fingerprint, me.software_fingerprint, me.hostname
        )
        record = self.store.start_nightly_run(
            machine_id=machine_id,
            hostname=me.hostname,
            fingerprint=me.fingerprint,
            pid=os.getpid(),
            settings={**self.settings.to_dict(), "previous_hosts": planned.previous_hosts},
            plan=[i.to_dict() for i in plan],
        )
        self.run_id = record.id
        budget = self.settings.budget_s if self.settings.budget_s is not None else self.settings.config.budget_s
        self._deadline = time.monotonic() + budget if budget else None
        try:
            for n, item in enumerate(plan):
                self.results.append(self.step(item, plan[n + 1 :]))
                self.store.record_nightly_results(record.id, self.results)
        except Exception as exc:  # a bug: the traceback follows; the row says so first
            self.store.finish_nightly_run(
                record.id,
                status="failed",
                exit_code=EXIT_ERROR,
                summary=f"failed: {type(exc).__name__}: {exc}",
                results=self.results,
            )
            raise
        except BaseException:  # Ctrl-C, SystemExit
            self.store.finish_nightly_run(
                record.id,
                status="interrupted",
                exit_code=None,
                summary="stopped before it finished; the next run resumes its plan",
                results=self.results,
            )
            raise
        code = exit_status(self.results)
        lines = summary_lines(plan, self.results) or [
            "tuner nightly: nothing to do: no stored winner for this machine, a previous incarnation or a similar "
            "machine, and no --config"
        ]
        for line in lines:
            self.say(line)
        final = self.store.finish_nightly_run(
            record.id, status="done", exit_code=code, summary="\n".join(lines), results=self.results
        )
        return code, final

    def step(self, item: PlanItem, rest: list[PlanItem]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "key": item.key,
            "label": item.label(),
            "action": item.action,
            "reason": item.reason,
            "started": _now(),
        }
        if item.action == SKIP:
            return {**result, "outcome": "skipped", "finished": _now()}
        left = self._left()
        if left is not None and left <= 0:
            return {
                **result,
                "outcome": "deferred",
                "note": "the budget was spent; the next run takes it",
                "finished": _now(),
            }
        self.say(f"{item.label()}: {item.action}: {item.reason}")
        try:
            if item.action == VERIFY:
                result = self._verify(item, result, rest)
            else:
                if item.state == "drifted":
                    result["drifted"] = True  # the last verify said its speedup no longer holds: exit 3
                result = self._tune(item, result, rest)
        except UserError as exc:
            result.update(outcome="error", error=str(exc))
            self.say(f"{item.label()}: error: {exc}")
        result["finished"] = _now()
        return result

    def _left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _share(self, item: PlanItem, rest: list[PlanItem]) -> float | None:
        """This study's part of what is left of the run's budget, capped by its own."""
        left = self._left()
        share = None if left is None else left / (1 + sum(1 for i in rest if i.action != SKIP))
        if item.budget_s is not None:
            share = item.budget_s if share is None else min(share, item.budget_s)
        return share

    # -- verify ---------------------------------------------------------------------

    def _verify(self, item: PlanItem, result: dict[str, Any], rest: list[PlanItem]) -> dict[str, Any]:
        from tuner.nightly.verify import verify_winner

        status = item.status
        assert status is not None and status.winner is not None and status.model_ref is not None
        verdict = verify_winner(
            self.store,
            status.winner,
            status.model_ref,
            self.machine,
            rounds=self.settings.rounds,
            min_time=self.settings.min_time,
            noise_retries=self.settings.noise_retries,
            noise_wait_s=self.settings.noise_wait_s,
        )
        result["verify"] = verdict.to_dict()
        if verdict.holds is not False:
            result["outcome"] = "verified" if verdict.holds else "unverified"
            self.say(f"{item.label()}: verify: {verdict.describe()}: {'it holds' if verdict.holds else 'no verdict'}")
            return result
        self.say(f"{item.label()}: verify: {verdict.describe()}: it no longer holds; re-tuning")
        item.action, item.state = RETUNE, "drifted"
        item.reason = f"drifted: the verify measured {verdict.describe()}"
        item.seeds, item.short = seed_configs(status.winner), True
        result.update(drifted=True, action=RETUNE, reason=item.reason)
        left = self._left()
        if left is not None and left <= 0:
            result.update(outcome="deferred", note="drifted; the budget was spent before the re-tune")
            return result
        return self._tune(item, result, rest)

    # -- tune -----------------------------------------------------------------------

    def _tune(self, item: PlanItem, result: dict[str, Any], rest: list[PlanItem]) -> dict[str, Any]:
        from tuner.nightly._search import Tuner
        from tuner.trial.spec import Workload

        status = item.status
        old = status.winner.best if status is not None and status.winner is not None else None
        model = status.model_ref.model_id if status is not None and status.model_ref is not None else item.model
        seeds, first = fit_seeds(self.machine, item, item.seeds)
        if item.action == CONFIRM and not seeds:
            item.action = RETUNE  # nothing of the previous winner fits here: search instead
            result["note"] = "no configuration of the previous winner fits this machine's space; re-tuned instead"
        if item.action == CONFIRM:
            trials = 1 + len(seeds)  # the stock default, the previous winner and its finalists, nothing else
        elif item.trials:
            trials = item.trials
        elif item.short and seeds:
            trials = first + SHORT_EXTRA
        else:
            trials = item.previous_trials or DEFAULT_TRIALS
        budget = self._share(item, rest)
        options = self._options(item, model, trials, budget, seeds)
        tuner = Tuner(options, progress=False)
        try:
            name = tuner.study_name(Workload(seq_len=item.seq_len, batch=item.batch))
            target = self._target(item, tuner, name, trials)
            if target != trials:
                tuner.close()
                options = self._options(item, model, target, budget, seeds)
                tuner = Tuner(options, progress=False)
            result.update(outcome="running", study=name, trials_target=target, budget_s=budget, seeds=len(seeds))
            if self.run_id is not None:
                self.store.record_nightly_results(self.run_id, [*self.results, result])
            outcomes = tuner.run()
            model_hash = tuner.model.content_hash
        finally:
            tuner.close()
        outcome = outcomes[0]
        new = next(
            iter(
                self.store.best(
                    self.machine.fingerprint,
                    model_hash,
                    seq_len=item.seq_len,
                    batch=item.batch,
                    objective=item.objective,
                )
            ),
            None,
        )
        result.update(
            outcome="tuned" if new is not None else "no winner",
            stop=outcome.stop_reason,
            trials=len(outcome.trials),
            old=_winner_dict(old),
            new=_winner_dict(new),
        )
        result["slower"] = bool(old is not None and new is not None and _slower(item.objective, old, new))
        self.say(f"{item.label()}: {describe_change(result)}")
        return result

    def _target(self, item: PlanItem, tuner: Any, name: str, trials: int) -> int:
        """The study's trial target: its trials so far plus ``trials``; the target an
        interrupted run set, when it was working on this same study."""
        earlier = self._resume.get(item.key)
        if earlier is not None and earlier.get("study") == name and isinstance(earlier.get("trials_target"), int):
            return int(earlier["trials_target"])
        study = next(
            (
                s
                for s in self.store.studies(fingerprint=self.machine.fingerprint, model=tuner.model.content_hash)
                if s.optuna_study_name == name
            ),
            None,
        )
        if study is None:
            return trials
        counted = sum(1 for t in self.store.trials(study.id) if t.status not in _NOT_COUNTED)
        return counted + trials

    def _options(
        self, item: PlanItem, model: str, trials: int, budget: float | None, seeds: list[dict[str, Any]]
    ) -> Any:
        from tuner.nightly._search import TuneOptions
        from tuner.trial.accuracy import Guard
        from tuner.trial.spec import MeasureSettings

        status = item.status
        settings = status.winner.study_settings if status is not None and status.winner is not None else {}
        guard_values = {k: v for k, v in (settings.get("guard") or {}).items() if k in Guard.__dataclass_fields__}
        max_memory = settings.get("max_memory_mb")
        # A confirmation's trials are the stock default then the seeds: no search around them.
        strategy = "random" if item.action == CONFIRM else str(settings.get("strategy") or "structured")
        finalists = item.finalists if item.finalists is not None else 3
        rounds = None
        if status is not None and status.winner is not None:
            rounds = status.winner.best.metrics.get("finalist_rounds")
        min_time = self.settings.min_time
        return TuneOptions(
            model=model,
            seq_lens=[item.seq_len],
            batch=item.batch,
            trials=trials,
            budget_s=budget,
            objective=item.objective,
            db_url=self.settings.db_url,
            guard=Guard(**guard_values),
            measure=MeasureSettings(min_seconds=min_time, warmup_seconds=min(0.3, min_time / 3)),
            backends=item.backends,
            seed_configs=seeds,
            strategy=strategy,
            max_memory_mb=float(max_memory) if isinstance(max_memory, (int, float)) else None,
            finalists=finalists,
            finalist_rounds=int(rounds) if isinstance(rounds, int) and rounds >= 3 else 5,
            noise_retries=self.settings.noise_retries,
            noise_wait_s=self.settings.noise_wait_s,
        )


def fit_seeds(machine: "MachineInfo", item: PlanItem, seeds: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The seeds as this machine's space takes them, and how many configurations a
    structured study measures before its local search (its warm start and these seeds).

    A whole-number knob outside today's range (threads on a smaller machine) is
    brought to its nearest bound; a seed with a choice the space no longer has is left out.
    """
    from tuner.nightly._search import warm_start
    from tuner.space import load_space
    from tuner.vocabulary import config_key

    try:
        space = load_space(machine, backends=item.backends, objective=item.objective)
    except UserError:
        return [], 0
    fitted: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        config = dict(seed)
        if config.get("backend") in space.backends:
            for dim in space.dimensions(str(config["backend"])):
                value = config.get(dim.name)
                if dim.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
                    config[dim.name] = min(max(value, dim.low), dim.high)
        try:
            space.validate(config)
        except UserError:
            continue
        fitted.setdefault(config_key(config), config)
    first = {config_key(c) for c in warm_start(space)} | set(fitted)
    return list(fitted.values()), len(first)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _winner_dict(best: "BestRecord | None") -> dict[str, Any] | None:
    if best is None:
        return None
    from tuner.vocabulary import describe_config

    return {
        "config": best.config,
        "summary": describe_config(best.config),
        "speedup": best.speedup,
        "speedup_ci95": [best.speedup_low, best.speedup_high] if best.speedup_low is not None else None,
        "value": best.metrics.get("value"),
        "median_ms": best.metrics.get("median_ms"),
        "fingerprint": best.fingerprint,
        "chosen": best.updated.isoformat(timespec="seconds"),
    }


def _slower(objective: str, old: "BestRecord", new: "BestRecord") -> bool:
    before, after = old.metrics.get("value"), new.metrics.get("value")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or before <= 0 or after <= 0:
        return False
    if objective == "throughput":
        return after < before * (1 - SLOWER_MARGIN)
    return after > before * (1 + SLOWER_MARGIN)


def _short(winner: dict[str, Any] | None) -> str:
    if winner is None:
        return "none"
    config = winner["config"]
    name = f"{config.get('backend')} {config.get('precision', '')}".strip()
    speedup = winner.get("speedup")
    return f"{name} {speedup:.2f}x" if isinstance(speedup, (int, float)) else name


def describe_change(result: dict[str, Any]) -> str:
    """ "re-tuned in 12 trials: onnxruntime int8 3.10x -> openvino int8 3.40x", and "(slower)"."""
    outcome = result.get("outcome")
    if outcome in ("tuned", "no winner"):
        what = {"confirm": "confirmed", "tune": "tuned"}.get(str(result.get("action")), "re-tuned")
        text = (
            f"{what} in {result.get('trials', 0)} trials ({result.get('stop')}): "
            f"{_short(result.get('old'))} -> {_short(result.get('new'))}"
        )
        if result.get("slower"):
            text += " (slower than the previous winner)"
        return text
    if outcome == "verified":
        return "verified: it holds"
    if outcome == "error":
        return f"error: {result.get('error')}"
    if outcome == "deferred":
        return f"deferred: {result.get('note')}"
    if outcome == "skipped":
        return "skipped"
    return str(outcome)


def exit_status(results: list[dict[str, Any]]) -> int:
    """1 when a step failed; else 3 when a winner got slower or a verify failed; else 0."""
    if any(r.get("outcome") == "error" for r in results):
        return EXIT_ERROR
    if any(r.get("slower") or r.get("drifted") for r in results):
        return EXIT_WORSE
    return EXIT_OK


def summary_lines(plan: list[PlanItem], results: list[dict[str, Any]]) -> list[str]:
    """One line per model, for the journal."""
    by_model: dict[str, list[str]] = {}
    for item, result in zip(plan, results):
        what = describe_change(result)
        if result.get("outcome") == "skipped":
            what = item.reason
        seq = (
            f"seq {item.seq_len}"
            + (f" batch {item.batch}" if item.batch != 1 else "")
            + (f" {item.objective}" if item.objective != "p50" else "")
        )
        by_model.setdefault(item.model, []).append(f"{seq} {what}")
    return [f"tuner nightly: {model}: " + "; ".join(parts) for model, parts in sorted(by_model.items())]
