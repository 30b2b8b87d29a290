"""``tuner auto``: tune a model on this machine and print the winner per workload."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.cli.common import add_db_argument, format_accuracy, format_ms, parse_duration, parse_seq_lens
from tuner.errors import UserError

DEFAULT_TRIALS = 30


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("auto", help="tune a model on this machine", description=__doc__)
    p.add_argument("--model", required=True, help="local folder, installed model package, or cached Hugging Face id")
    p.add_argument("--seq-len", default="16,128", help="comma-separated sequence lengths (default 16,128)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--trials", type=int, default=None, help=f"measured trials per sequence length (default {DEFAULT_TRIALS})")
    p.add_argument("--budget", default=None, help="wall-clock budget for the whole run, e.g. 10m (split across lengths)")
    p.add_argument("--objective", default="p50", choices=["p50", "p90", "p99", "throughput"])
    p.add_argument("--eval-text", type=Path, default=None, metavar="FILE",
                   help="your own accuracy-guard sentences, one per line (default: a built-in diverse set)")
    p.add_argument("--min-cosine", type=float, default=0.99, help="guard: mean embedding cosine to fp32 (default 0.99)")
    p.add_argument("--min-cosine-min", type=float, default=0.98, help="guard: worst sentence's cosine (default 0.98)")
    p.add_argument("--min-label-agreement", type=float, default=0.99, help="guard for classifiers (default 0.99)")
    p.add_argument("--trial-timeout", type=float, default=600.0, help="seconds before a trial is killed (default 600)")
    p.add_argument("--min-time", type=float, default=1.0, metavar="SECONDS",
                   help="time each trial for at least this long, after warm-up (default 1.0)")
    p.add_argument("--seed", type=int, default=None, help="sampler seed, for a reproducible search order")
    p.add_argument("--wait", action="store_true", help="wait for another tuning run on this machine instead of refusing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_db_argument(p)
    p.set_defaults(func=run)


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


def build_options(args: argparse.Namespace):
    from tuner.search.study import TuneOptions
    from tuner.trial.accuracy import Guard
    from tuner.trial.spec import MeasureSettings

    if args.min_time <= 0:
        raise UserError("--min-time must be positive, e.g. 1.0")
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be at least 1")
    budget = parse_duration(args.budget) if args.budget else None
    trials = args.trials if args.trials is not None or budget is not None else DEFAULT_TRIALS
    return TuneOptions(
        model=args.model,
        seq_lens=parse_seq_lens(args.seq_len),
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
    )


def print_outcome(outcome) -> None:
    from tuner.search.study import describe_config

    w = outcome.workload
    counts: dict[str, int] = {}
    for t in outcome.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    print(f"\n== seq {w.seq_len}, batch {w.batch}: {len(outcome.trials)} trials "
          f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); stopped: {outcome.stop_reason}")
    winner, default = outcome.winner, outcome.default
    if winner is None:
        print("   no configuration passed; see `tuner history` for the reasons")
        return
    print(f"   winner  trial {winner.number}: {describe_config(winner.config)}")
    print(f"           median {format_ms(winner.median_ms)} ms  p90 {format_ms(winner.p90_ms)} ms  "
          f"p99 {format_ms(winner.p99_ms)} ms  accuracy {format_accuracy(winner.accuracy)}")
    if default is not None and outcome.speedup:
        print(f"   default trial {default.number}: {describe_config(default.config)}: median {format_ms(default.median_ms)} ms")
        print(f"   speedup {outcome.speedup:.2f}x over the stock default ({outcome.objective})")
    else:
        print("   the stock default did not produce a result, so no speedup is stated")


def run(args: argparse.Namespace) -> int:
    from tuner.search.lock import MachineLock
    from tuner.search.study import Tuner

    options = build_options(args)
    tuner = Tuner(options, progress=not args.quiet)  # resolves the model first: bad input fails fast
    try:
        with MachineLock(wait=args.wait, what=f"tuner auto --model {args.model}"):
            tuner.run(on_outcome=print_outcome)
    finally:
        tuner.close()
    return 0
