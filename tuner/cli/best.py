"""``tuner best``: the stored winner for this machine, in a form a deploy script reads."""

from __future__ import annotations

import argparse
import json
import sys

from tuner.cli.common import add_db_argument, add_winner_arguments
from tuner.vocabulary import SINGLE_OBJECTIVES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("best", help="print the stored winning configuration", description=__doc__)
    add_winner_arguments(p, SINGLE_OBJECTIVES, seq_len_help="which tuned length (required by env/shell when several)")
    p.add_argument("--format", default="json", choices=["json", "env", "shell"],
                   help="json: everything; env: unset/export lines to eval; shell: a command prefix (one per instance)")
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.lookup import best_config, best_configs

    if args.format == "json":
        found = best_configs(args.model, args.seq_len, args.batch, args.objective, args.db)
        if not found:  # same message as the single lookup
            best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
        warn_if_stale(args, found)
        print(json.dumps([b.to_dict() for b in found], indent=2, sort_keys=True))
        return 0
    best = best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
    warn_if_stale(args, [best])
    # On stderr: what `eval` or `$(...)` reads stays exactly the lines or the prefix.
    print(f"# seq {best.seq_len}: speedup {best.describe_speedup()} over the stock default", file=sys.stderr)
    if args.format == "env":
        print("\n".join(best.env_lines()))
    else:
        # A throughput winner runs N processes: one prefix per line, instance 0 first.
        print("\n".join(best.shell_prefix(i) for i in range(max(1, len(best.instances)))))
    return 0


def warn_if_stale(args: argparse.Namespace, found: list) -> None:
    """On stderr: a winner returned that is stale or drifted here, and why (docs/nightly.md)."""
    from tuner.hardware import detect
    from tuner.nightly import judge_winners
    from tuner.store import Store

    if not found:
        return
    store = Store.open(args.db, read_only=True)
    try:
        statuses = judge_winners(store, detect(), found[0].model_hash, [b.seq_len for b in found], args.batch,
                                 args.objective)
    finally:
        store.close()
    for status in statuses:
        if status.state in ("stale", "drifted"):
            print(f"warning: the winner for {args.model} at seq {status.seq_len} is {status.state}: "
                  f"{'; '.join(status.reasons)}; `tuner nightly` (or `tuner auto --model {args.model}`) "
                  "re-tunes it", file=sys.stderr)
