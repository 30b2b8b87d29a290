"""``tuner verify``: does the stored winner still beat the stock default here?

Replays the stored winner and the stock default in fresh processes, interleaved
(winner and default alternate, the order rotating each round), at least 5 times each
by default, and prints the speedup with its 95% confidence interval (the two-level
bootstrap of docs/measurement.md). When the stored speedup lies outside today's
interval it warns and exits 3, so a cron job notices that it is time to re-tune.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tuner.cli.common import (
    add_db_argument,
    add_winner_arguments,
    format_ms,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
)
from tuner.errors import UserError
from tuner.vocabulary import (
    DEFAULT_FINALIST_ROUNDS,
    DEFAULT_NOISE_RETRIES,
    DEFAULT_NOISE_WAIT_S,
    DEFAULT_OBJECTIVE,
    MIN_FINALIST_ROUNDS,
    SINGLE_OBJECTIVES,
)

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.model import ModelRef
    from tuner.store import BestRecord, Store

EXIT_NO_LONGER_HOLDS = 3


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "verify",
        help="re-measure the stored winner against the stock default",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_winner_arguments(
        p, SINGLE_OBJECTIVES, DEFAULT_OBJECTIVE.value, seq_len_help="which tuned length (default: every stored one)"
    )
    p.add_argument(
        "--rounds",
        type=int_at_least(MIN_FINALIST_ROUNDS),
        default=DEFAULT_FINALIST_ROUNDS,
        metavar="R",
        help=f"fresh processes for each of the two (default {DEFAULT_FINALIST_ROUNDS}, at least {MIN_FINALIST_ROUNDS})",
    )
    p.add_argument(
        "--min-time",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="time each run for at least this long, after warm-up, above 0 (default 1.0)",
    )
    p.add_argument(
        "--noise-retries",
        type=non_negative_int,
        default=DEFAULT_NOISE_RETRIES,
        metavar="N",
        help=f"re-run a run timed while other processes used its CPUs, up to N times (default {DEFAULT_NOISE_RETRIES})",
    )
    p.add_argument(
        "--noise-wait",
        type=non_negative_float,
        default=DEFAULT_NOISE_WAIT_S,
        metavar="SECONDS",
        help=f"before a run, wait up to this long for a busy machine to calm down "
        f"(default {DEFAULT_NOISE_WAIT_S:g}; 0: never)",
    )
    p.add_argument("--wait", action="store_true", help="wait for a tuning run on this machine instead of refusing")
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.model import resolve_model
    from tuner.search.lock import MachineLock
    from tuner.store import Store

    if args.rounds < MIN_FINALIST_ROUNDS:
        raise UserError(
            f"--rounds must be at least {MIN_FINALIST_ROUNDS}: fewer fresh processes cannot bound a speedup"
        )
    if args.min_time <= 0:
        raise UserError("--min-time must be positive, e.g. 1.0")
    model = resolve_model(args.model)
    machine = detect()
    # The winners first, read-only: a verify refused because there is none creates nothing.
    with Store.open(args.db, read_only=True) as reader:
        found = reader.best(
            machine.fingerprint, model.content_hash, seq_len=args.seq_len, batch=args.batch, objective=args.objective
        )
    if not found:
        where = f" at seq {args.seq_len}" if args.seq_len else ""
        raise UserError(
            f"no tuned configuration for {args.model}{where} (batch {args.batch}, {args.objective}) "
            f"on this machine; run `tuner auto --model {args.model}` first"
        )
    store = Store.open(args.db)
    try:
        holds = True
        with MachineLock(wait=args.wait, what=f"tuner verify --model {args.model}"):
            for best in found:
                holds = verify_one(args, store, model, machine, best) and holds
    finally:
        store.close()
    return 0 if holds else EXIT_NO_LONGER_HOLDS


def verify_one(
    args: argparse.Namespace,
    store: Store,
    model: ModelRef,
    machine: MachineInfo,
    best: BestRecord,
    runner: Any | None = None,
) -> bool:
    """Re-measure one stored winner; True when its stored speedup still holds.

    The runs are judged as the study judged its finalists (tuner.search._replay: the
    study's own accuracy guard and memory limit, the probe against the plan), so a
    winner whose replay fails them today has no speedup to state. ``runner`` replaces
    the process runner (tests).
    """
    from tuner.model import DEFAULT_EVAL_TEXTS
    from tuner.search import finalists as F
    from tuner.search.clusters import processes_notes
    from tuner.search.objective import space_objective
    from tuner.search.quiet import QuietRunner
    from tuner.search.study import Judge, Replay
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner
    from tuner.vocabulary import config_key, describe_config

    trial = store.trial_by_id(best.trial_id)
    study = next(s for s in store.studies(fingerprint=machine.fingerprint) if s.id == trial.study_id)
    # The default the study compared with (it may have searched fewer backends).
    default_config = (
        study.settings.get("default") or load_space(machine, objective=space_objective(best.objective)).default_config()
    )
    print(f"seq {best.seq_len}, batch {best.batch} ({best.objective}):")
    print(f"  stored winner: {describe_config(best.config)}")
    print(f"  stock default: {describe_config(default_config)}")
    if config_key(best.config) == config_key(default_config):
        print("  the stored winner is the stock default (nothing was significantly faster): nothing to verify")
        return True
    workload = S.Workload(seq_len=best.seq_len, batch=best.batch)
    measure = S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3))
    if runner is None:
        runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure)
    quiet = QuietRunner(runner, retries=args.noise_retries, wait_s=args.noise_wait)
    default = F.Candidate("default", default_config)
    winner = F.Candidate("candidate", best.config, trial)

    def name(candidate: F.Candidate) -> str:
        return "winner " if candidate.role == "candidate" else "default"

    def show(candidate: F.Candidate, round_: int, result: S.TrialResult) -> None:
        stats = result.stats
        what = (
            f"median {format_ms(stats.get('median'))} ms"
            if result.status == S.OK
            else f"{result.status}: {result.reason}"
        )
        flags = f" [{', '.join(result.flags)}]" if result.flags else ""
        print(f"    round {round_ + 1} {name(candidate)}: {what}{flags}", flush=True)

    replay = Replay(
        quiet,
        store,
        trial.study_id,
        workload,
        runner.reference(workload),
        Judge.of_study(study, model.task),
        measure,
        "verify",
        label=lambda candidate, round_: f"{name(candidate)} round {round_ + 1}",
        on_run=None if args.quiet else show,
    )
    replay.remeasure([winner, default], args.rounds)
    for candidate in (winner, default):
        medians = [r.stats["median"] for r in candidate.measured]
        listed = " ".join(format_ms(m) for m in medians) or "-"
        print(
            f"  {name(candidate)} {len(candidate.measured)}/{len(candidate.runs)} runs measured, "
            f"per-process medians {listed} ms"
        )
    for note in processes_notes([(name(c).strip(), c.medians()) for c in (winner, default)]):
        print(f"  {note}")
    if len(winner.measured) < 2 or len(default.measured) < 2:
        failed = [r for r in winner.runs if r.status != S.OK]
        if failed:
            print(
                f"warning: seq {best.seq_len}: the stored winner failed {len(failed)} of {len(winner.runs)} "
                f"replays ({failed[0].status}: {failed[0].reason}); run `tuner auto --model {args.model}` again",
                file=sys.stderr,
            )
        print("  too few runs produced a result to state a speedup; see the reasons above", file=sys.stderr)
        return False
    today = F.compare(best.objective, default, winner, best.batch)
    print(
        f"  speedup {today.describe()} over the stock default, "
        f"{today.candidate_runs} vs {today.baseline_runs} fresh processes, interleaved"
    )
    if best.speedup is None:
        print("  no speedup was stored with this winner, so there is nothing to compare")
        return True
    stored = f"{best.speedup:.2f}x"
    if best.speedup_low is not None and best.speedup_high is not None:
        stored += f" (95% CI {best.speedup_low:.2f}-{best.speedup_high:.2f})"
    if today.contains(best.speedup):
        print(f"  stored speedup {stored} lies within today's interval: it holds")
        return True
    print(
        f"warning: seq {best.seq_len}: the stored speedup {stored} no longer holds: today it is "
        f"{today.describe()}; run `tuner auto --model {args.model}` again",
        file=sys.stderr,
    )
    return False
