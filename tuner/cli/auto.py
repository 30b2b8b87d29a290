"""``tuner auto``: tune a model on this machine and print the winner per workload."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.cli.common import (
    add_db_argument,
    dominance_ratio,
    duration,
    format_accuracy,
    format_ms,
    fraction,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seq_lens,
    size_mb,
)
from tuner.errors import UserError
from tuner.vocabulary import (
    DEFAULT_FINALIST_MAX_ROUNDS,
    DEFAULT_FINALIST_ROUNDS,
    DEFAULT_FINALISTS,
    DEFAULT_NOISE_RETRIES,
    DEFAULT_NOISE_WAIT_S,
    DEFAULT_OBJECTIVE,
    DEFAULT_PRUNE_MARGIN,
    DEFAULT_RACE_EVERY,
    DEFAULT_SKIP_DOMINATED,
    DEFAULT_STRATEGY,
    DEFAULT_TRIALS,
    MIN_FINALIST_ROUNDS,
    OBJECTIVES,
    STRATEGIES,
    Objective,
    TrialStatus,
)

if TYPE_CHECKING:
    from tuner.search.finalists import Candidate
    from tuner.search.study import StudyOutcome, TuneOptions
    from tuner.store import TrialRecord
    from tuner.trial.spec import TrialResult


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "auto",
        help="tune a model on this machine",
        description=__doc__,
        epilog=STUDY_IDENTITY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="local folder, installed model package, or Hugging Face id org/name[@revision] "
        "(downloaded when not in the cache; docs/models.md)",
    )
    p.add_argument(
        "--seq-len",
        type=seq_lens,
        default=[16, 128],
        metavar="S,S",
        help="comma-separated sequence lengths, each 1-8192 (default 16,128)",
    )
    p.add_argument("--batch", type=positive_int, default=1, help="sentences per call, 1 or more (default 1)")
    p.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"measured trials per sequence length, 1 or more (default {DEFAULT_TRIALS}; "
        "a resumed study runs up to N in all)",
    )
    p.add_argument(
        "--budget",
        type=duration,
        default=None,
        metavar="DURATION",
        help="wall-clock budget for the whole run, above 0, e.g. 90s, 10m or 1h (split across lengths)",
    )
    p.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE.value,
        choices=OBJECTIVES,
        help="minimise a latency percentile, maximise throughput, or pareto: both at once, "
        "a latency-throughput front (`tuner history --pareto`)",
    )
    p.add_argument(
        "--max-memory",
        type=size_mb,
        default=None,
        metavar="SIZE",
        help="constraint: the worker's peak resident memory, e.g. 800M or 2G (a trial above it cannot win)",
    )
    p.add_argument(
        "--backends",
        default=None,
        metavar="A,B",
        help="only these backends (default: every backend this machine can run; see `tuner space`)",
    )
    p.add_argument(
        "--space",
        dest="space_files",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a search-space TOML file of your own, in the format of search_spaces/*.toml, read over "
        "the shipped ones: it restricts or extends a backend's dimensions (repeatable; "
        "docs/search-space.md)",
    )
    p.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        choices=STRATEGIES,
        help="search strategy (default structured: each backend and precision first, then TPE; docs/search.md)",
    )
    p.add_argument(
        "--finalists",
        type=non_negative_int,
        default=DEFAULT_FINALISTS,
        metavar="K",
        help=f"re-measure the K best in fresh processes against the stock default (default {DEFAULT_FINALISTS}; 0: off)",
    )
    p.add_argument(
        "--finalist-rounds",
        type=int_at_least(MIN_FINALIST_ROUNDS),
        default=DEFAULT_FINALIST_ROUNDS,
        metavar="R",
        help=f"fresh processes per finalist and for the default, interleaved "
        f"(default {DEFAULT_FINALIST_ROUNDS}, at least {MIN_FINALIST_ROUNDS})",
    )
    p.add_argument(
        "--finalist-max-rounds",
        type=int_at_least(MIN_FINALIST_ROUNDS),
        default=DEFAULT_FINALIST_MAX_ROUNDS,
        metavar="R",
        help="finalists the leader cannot yet be told apart from get more fresh processes, up to R each "
        f"(default {DEFAULT_FINALIST_MAX_ROUNDS}; at least --finalist-rounds)",
    )
    p.add_argument(
        "--race-every",
        type=non_negative_int,
        default=DEFAULT_RACE_EVERY,
        metavar="N",
        help="racing: after every N measured trials, re-measure the leading configurations in fresh "
        f"processes (default {DEFAULT_RACE_EVERY}; 0: off; docs/search.md)",
    )
    p.add_argument(
        "--no-prune",
        action="store_true",
        help="measure every trial in full (default: stop clearly slower ones after a short first measurement)",
    )
    p.add_argument(
        "--skip-dominated",
        type=dominance_ratio,
        default=DEFAULT_SKIP_DOMINATED,
        metavar="RATIO",
        help="structured search: after the warm start, do not run a backend whose every trial took "
        f"RATIO x the best median, above 1 (default {DEFAULT_SKIP_DOMINATED:g}; 0 runs every proposal)",
    )
    p.add_argument(
        "--prune-margin",
        type=positive_float,
        default=DEFAULT_PRUNE_MARGIN,
        metavar="FRACTION",
        help=f"a short first measurement this much slower than the best so far is pruned, above 0 "
        f"(default {DEFAULT_PRUNE_MARGIN} = {DEFAULT_PRUNE_MARGIN * 100:.0f}%%)",
    )
    p.add_argument(
        "--noise-retries",
        type=non_negative_int,
        default=DEFAULT_NOISE_RETRIES,
        metavar="N",
        help=f"re-run a trial timed while other processes used its CPUs, up to N times "
        f"(default {DEFAULT_NOISE_RETRIES})",
    )
    p.add_argument(
        "--noise-wait",
        type=non_negative_float,
        default=DEFAULT_NOISE_WAIT_S,
        metavar="SECONDS",
        help=f"before a trial, wait up to this long for a busy machine to calm down "
        f"(default {DEFAULT_NOISE_WAIT_S:g}; 0: never)",
    )
    p.add_argument(
        "--cold-start",
        action="store_true",
        help="start every trial's worker cold (default: torch-family trials are forked by a server "
        "that has imported torch and transformers, started exactly as the worker would be)",
    )
    p.add_argument(
        "--eval-text",
        type=Path,
        default=None,
        metavar="FILE",
        help="your own accuracy-guard sentences, one per line (default: a built-in diverse set)",
    )
    p.add_argument(
        "--min-cosine",
        type=fraction,
        default=0.99,
        metavar="X",
        help="guard: mean embedding cosine to fp32, between 0 and 1 (default 0.99)",
    )
    p.add_argument(
        "--min-cosine-min",
        type=fraction,
        default=0.98,
        metavar="X",
        help="guard: worst sentence's cosine to fp32, between 0 and 1 (default 0.98)",
    )
    p.add_argument(
        "--min-label-agreement",
        type=fraction,
        default=0.99,
        metavar="X",
        help="guard for classifiers: share of labels equal to fp32's, between 0 and 1 (default 0.99)",
    )
    p.add_argument(
        "--trial-timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="seconds before a trial is killed with its process group, above 0 (default: 600 for a "
        "model of up to MiniLM-L6's 23M parameters, in proportion above: about 2900 for BERT-base)",
    )
    p.add_argument(
        "--min-time",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="time each trial for at least this long, after warm-up, above 0 (default 1.0)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampler seed, for a reproducible search order")
    p.add_argument(
        "--wait", action="store_true", help="wait for another tuning run on this machine instead of refusing"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--join",
        action="store_true",
        help="share the study with machines of the same fingerprint running the same command on the same "
        "--db (a PostgreSQL server): each trial runs on one of them, --trials counts them all, the "
        "finalists run once (docs/fleet.md)",
    )
    p.add_argument(
        "--join-grace",
        type=int_at_least(2),
        default=180,
        metavar="SECONDS",
        help="with --join: a trial whose machine stopped beating its heartbeat this long is run again "
        "by another, at least 2 (default 180)",
    )
    p.add_argument(
        "--db-retry",
        type=non_negative_float,
        default=120.0,
        metavar="SECONDS",
        help="how long a trial's result waits for a database server that went away before the study "
        "stops, keeping it for the next run (default 120; docs/fleet.md)",
    )
    p.add_argument(
        "--no-similar",
        action="store_true",
        help="do not start a new study from the results of the most similar machines in the database (docs/fleet.md)",
    )
    add_db_argument(p)
    p.set_defaults(func=run)


# What `tuner auto --help` says about resuming (the study's name holds these).
STUDY_IDENTITY = """\
resuming:
  The same command again resumes each sequence length's stored study: interrupted trials run
  first, measured ones are not repeated, --trials and --budget count what is stored. A study is
  the model, machine, sequence length, batch, --objective, the search space (with --backends and
  --space), the guard sentences (--eval-text), the guard (--min-cosine, --min-cosine-min,
  --min-label-agreement) and --max-memory: change one of those and a new study starts (the old
  one stays in `tuner history`). The other options apply to the rest of the stored study.
"""


def _read_eval_texts(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        texts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise UserError(f"--eval-text {path}: {exc.strerror}; give a text file with one sentence per line") from None
    if not texts:
        raise UserError(f"--eval-text {path} has no sentences; put one sentence per line")
    return texts


def build_options(args: argparse.Namespace) -> TuneOptions:
    """The study's options; every number was checked when the command line was parsed."""
    from tuner.search.study import TuneOptions
    from tuner.trial.accuracy import Guard
    from tuner.trial.spec import MeasureSettings

    budget = args.budget
    trials = args.trials if args.trials is not None or budget is not None else DEFAULT_TRIALS
    return TuneOptions(
        model=args.model,
        seq_lens=args.seq_len,
        batch=args.batch,
        trials=trials,
        budget_s=budget,
        objective=args.objective,
        db_url=args.db,
        eval_texts=_read_eval_texts(args.eval_text),
        guard=Guard(args.min_cosine, args.min_cosine_min, args.min_label_agreement),
        trial_timeout_s=args.trial_timeout,
        seed=args.seed,
        measure=MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3)),
        strategy=args.strategy,
        backends=[b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None,
        space_files=list(args.space_files),
        max_memory_mb=args.max_memory,
        prune=not args.no_prune,
        prune_margin=args.prune_margin,
        skip_dominated=args.skip_dominated,
        finalists=0 if args.objective == Objective.PARETO else args.finalists,
        finalist_rounds=args.finalist_rounds,
        finalist_max_rounds=max(args.finalist_max_rounds, args.finalist_rounds),
        race_every=args.race_every,
        noise_retries=args.noise_retries,
        noise_wait_s=args.noise_wait,
        fork_servers=not args.cold_start,
        similar_start=not args.no_similar,
        join=args.join,
        join_grace_s=args.join_grace,
        db_retry_s=args.db_retry,
    )


def print_outcome(outcome: StudyOutcome) -> None:
    _print_result(outcome)
    flagged = [t for t in outcome.trials if t.flags]
    if flagged:
        counts: dict[str, int] = {}
        for t in flagged:
            for flag in t.flags or ():
                counts[flag] = counts.get(flag, 0) + 1
        timed = sum(1 for t in outcome.trials if t.median_ms is not None and t.status != TrialStatus.DUPLICATE)
        print(
            f"   flagged: {len(flagged)} of {timed} timed trials ({', '.join(f'{n} {f}' for f, n in counts.items())}); "
            "`tuner history` lists them"
        )


def _print_result(outcome: StudyOutcome) -> None:
    from tuner.vocabulary import describe_config

    w = outcome.workload
    counts: dict[str, int] = {}
    for t in outcome.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    print(
        f"\n== seq {w.seq_len}, batch {w.batch}: {len(outcome.trials)} trials "
        f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); stopped: {outcome.stop_reason}"
    )
    if outcome.objective == Objective.PARETO:
        print_front(outcome.pareto)
        return
    winner, default = outcome.winner, outcome.default
    if winner is None:
        print("   no configuration passed; see `tuner history` for the reasons")
        return
    decision, ci = outcome.decision, outcome.speedup_ci
    # Each figure says where it comes from: the search's one measurement of the trial,
    # and the finalists' fresh processes, from which the speedup is computed.
    print(f"   winner  trial {winner.number}: {describe_config(winner.config)}")
    print(
        f"           search       median {format_ms(winner.median_ms)} ms  p90 {format_ms(winner.p90_ms)} ms  "
        f"p99 {format_ms(winner.p99_ms)} ms  accuracy {format_accuracy(winner.accuracy)}"
    )
    _print_remeasured(decision.winner if decision is not None else None, outcome)
    _print_warnings(trial_warnings(winner))
    if default is not None:
        print(f"   default trial {default.number}: {describe_config(default.config)}")
        print(f"           search       median {format_ms(default.median_ms)} ms")
        _print_remeasured(decision.default if decision is not None else None, outcome)
        if default.id != winner.id:
            _print_warnings(trial_warnings(default))
    if decision is not None:
        for verdict in decision.verdicts:
            trial = verdict.candidate.trial
            figure = verdict.speedup.describe() if verdict.speedup else verdict.note
            print(f"   finalist trial {trial.number if trial else '-'}: {figure}{runs_warning(verdict.candidate.runs)}")
        if decision.default is not None and runs_warning(decision.default.runs):
            print(f"   default re-measured{runs_warning(decision.default.runs)}")
        for note in decision.notes():  # racing, separation, speed clusters, drift
            print(f"   {note}")
    if ci is not None:
        assert decision is not None  # an interval comes from the finalists' re-measurement
        ratio = _ratio(decision.default, decision.winner, outcome)
        print(
            f"   speedup {ci.describe()} over the stock default, from the re-measurements ({ratio}; "
            f"{ci.candidate_runs} vs {ci.baseline_runs} fresh processes, interleaved)"
        )
    elif decision is not None:
        print(f"   speedup: none stated: {decision.summary}")
    elif default is not None and outcome.speedup:
        unit = "inf/s" if outcome.objective == Objective.THROUGHPUT else "ms"
        print(
            f"   speedup {outcome.speedup:.2f}x over the stock default, from the search's measurements "
            f"({outcome.objective} {_figure(default.value)} / {_figure(winner.value)} {unit}; not re-measured)"
        )
    else:
        print("   the stock default did not produce a result, so no speedup is stated")


def _remeasured(candidate: Candidate | None, outcome: StudyOutcome) -> float | None:
    """The figure a speedup is computed from for one side of the finalists'
    re-measurement: the objective's statistic over its processes' calls pooled, each
    process weighing the same (tuner.search.stats.pooled_statistic), or, for
    throughput, the mean of one rate per process."""
    if candidate is None or not candidate.measured:
        return None
    runs = candidate.measured
    if outcome.objective == Objective.THROUGHPUT:
        from tuner.search.pareto import throughput_of

        rates = [
            throughput_of(r.stats.get("median"), r.stats.get("throughput"), outcome.workload.batch) or 0.0 for r in runs
        ]
        return sum(rates) / len(rates)
    from tuner.search.stats import pooled_statistic

    # Each process weighing the same, as the speedup's point estimate does: pooling the
    # calls instead let a fast process outvote a slow one, and the two figures printed
    # beside the speedup did not divide to it on a noisy host.
    return pooled_statistic([r.samples_ms for r in runs], outcome.objective)


def _print_remeasured(candidate: Candidate | None, outcome: StudyOutcome) -> None:
    value = _remeasured(candidate, outcome)
    if value is None or candidate is None:
        return
    label = "throughput" if outcome.objective == Objective.THROUGHPUT else _STATISTIC.get(outcome.objective, "median")
    unit = "inf/s" if outcome.objective == Objective.THROUGHPUT else "ms"
    print(f"           re-measured  {label} {_figure(value)} {unit} ({len(candidate.measured)} fresh processes)")


def _ratio(default: Candidate | None, winner: Candidate, outcome: StudyOutcome) -> str:
    """ "p50 23.567 / 4.120 ms": the two re-measured figures the speedup divides."""
    base, cand = _remeasured(default, outcome), _remeasured(winner, outcome)
    if base is None or cand is None:
        return outcome.objective
    if outcome.objective == Objective.THROUGHPUT:
        return f"throughput {_figure(cand)} / {_figure(base)} inf/s"
    return f"{outcome.objective} {_figure(base)} / {_figure(cand)} ms"


_STATISTIC: dict[str, str] = {Objective.P50: "median", Objective.P90: "p90", Objective.P99: "p99"}


def _figure(value: float | None) -> str:
    return format_ms(value) if value is None or value < 1000 else f"{value:,.1f}"


def _print_warnings(words: list[str]) -> None:
    if words:
        print(f"           warning: {'; '.join(words)}")


def trial_warnings(trial: TrialRecord) -> list[str]:
    """A stored trial's stability flags in plain words (pyperf's instability warning)."""
    from tuner.trial.measure import stability_warnings, summarize

    if not trial.flags:
        return []
    return stability_warnings(summarize(trial.samples_ms) if trial.samples_ms else {}, flags=trial.flags)


def runs_warning(runs: list[TrialResult]) -> str:
    """'' when no re-measurement was flagged; else how many were, and the worst in words."""
    from tuner.trial.measure import stability_warnings

    flagged = [r for r in runs if r.flags]
    if not flagged:
        return ""
    worst = max(flagged, key=lambda r: (len(r.flags), r.stats.get("cv", 0.0)))
    return (
        f"; {len(flagged)} of {len(runs)} runs flagged "
        f"(worst: {'; '.join(stability_warnings(worst.stats, flags=worst.flags))})"
    )


def print_front(front: list[TrialRecord]) -> None:
    """The latency-throughput Pareto front, lowest latency first."""
    from tuner.search.pareto import throughput_of
    from tuner.vocabulary import describe_config

    if not front:
        print("   no configuration passed; see `tuner history` for the reasons")
        return
    print(f"   Pareto front ({len(front)}): median latency vs throughput")
    for t in front:
        rate = throughput_of(t.median_ms, t.throughput, 1)
        print(f"   trial {t.number:>3}: {format_ms(t.median_ms)} ms  {rate:,.1f} inf/s  {describe_config(t.config)}")


def run(args: argparse.Namespace) -> int:
    from tuner.model import resolve_model
    from tuner.search.lock import MachineLock
    from tuner.search.study import Tuner

    options = build_options(args)
    # Only `tuner auto` downloads: a hub id missing from the cache is fetched here, and
    # the Tuner then finds it in the cache like any other command would.
    resolve_model(args.model, download=True, progress=not args.quiet)
    # The machine first: a run refused because another holds it writes nothing. The
    # study's own processes (workers, fork servers) hold the lock with it, so it stays
    # held until the last of them is gone (tuner.search.lock).
    with MachineLock(wait=args.wait, what=f"tuner auto --model {args.model}"):
        tuner = Tuner(options, progress=not args.quiet)
        try:
            tuner.run(on_outcome=print_outcome)
            servers = getattr(tuner.runner, "servers", None)
            if servers is not None and servers.started:
                print(
                    f"fork servers: {servers.started} started, {servers.reused} torch-family trials forked from a "
                    "running one (`--cold-start` to start every worker cold)"
                )
        finally:
            tuner.close()  # its fork servers, before the lock goes
    return 0
