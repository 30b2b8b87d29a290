"""``tuner best``: the stored winner for this machine, in a form a deploy script reads."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuner.cli.common import add_db_argument, add_winner_arguments
from tuner.vocabulary import SINGLE_OBJECTIVES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("best", help="print the stored winning configuration", description=__doc__)
    add_winner_arguments(p, SINGLE_OBJECTIVES, seq_len_help="which tuned length (required by env/shell when several)")
    p.add_argument(
        "--format",
        default="json",
        choices=["json", "env", "shell"],
        help="json: everything; env: unset/export lines to eval; shell: a command prefix (one per instance)",
    )
    p.add_argument(
        "--from-similar",
        action="store_true",
        help="where this machine has no winner, the most similar machine's, marked as not measured here "
        "(docs/fleet.md)",
    )
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.store import open_reader

    # One connection for the winner and its staleness (a fleet's server: one login, not
    # two), read without SQLAlchemy where it can be (tuner.store._reader): a deploy script
    # runs this, a new process each time.
    store = open_reader(args.db)
    try:
        return _run(args, store)
    finally:
        store.close()


def _run(args: argparse.Namespace, store: Any) -> int:
    from tuner.deploy.lookup import best_config, best_configs

    if args.format == "json":
        found = best_configs(
            args.model, args.seq_len, args.batch, args.objective, args.db, args.from_similar, store=store
        )
        if not found:  # same message as the single lookup
            best_config(args.model, args.seq_len, args.batch, args.objective, args.db, store=store)
        warn_not_measured_here(found)
        warn_if_stale(args, [b for b in found if b.measured_here], store)
        print(json.dumps([b.to_dict() for b in found], indent=2, sort_keys=True))
        return 0
    best = best_config(args.model, args.seq_len, args.batch, args.objective, args.db, args.from_similar, store=store)
    warn_not_measured_here([best])
    if best.measured_here:
        warn_if_stale(args, [best], store)
    # On stderr: what `eval` or `$(...)` reads stays exactly the lines or the prefix.
    where = "" if best.measured_here else f" on {best.measured_on['hostname']}" if best.measured_on else ""
    print(f"# seq {best.seq_len}: speedup {best.describe_speedup()} over the stock default{where}", file=sys.stderr)
    if args.format == "env":
        print("\n".join(best.env_lines()))
    else:
        # A throughput winner runs N processes: one prefix per line, instance 0 first.
        print("\n".join(best.shell_prefix(i) for i in range(max(1, len(best.instances)))))
    return 0


def warn_not_measured_here(found: list) -> None:
    """On stderr: a winner of another machine (``--from-similar``) says so, once."""
    other = next((b for b in found if not b.measured_here and b.measured_on), None)
    if other is not None:
        on = other.measured_on
        print(
            f"warning: not measured here: the winner of {on['hostname']} ({on['fingerprint']}, {on['similarity']}); "
            f"`tuner auto --model {other.model}` tunes this machine",
            file=sys.stderr,
        )


def warn_if_stale(args: argparse.Namespace, found: list, store: Any) -> None:
    """On stderr: a winner returned that is stale or drifted here, and why (docs/nightly.md)."""
    if not found:
        return
    from tuner.hardware import detect
    from tuner.nightly import judge_winners

    statuses = judge_winners(
        store, detect(), found[0].model_hash, [b.seq_len for b in found], args.batch, args.objective
    )
    for status in statuses:
        if status.state in ("stale", "drifted"):
            print(
                f"warning: the winner for {args.model} at seq {status.seq_len} is {status.state}: "
                f"{'; '.join(status.reasons)}; `tuner nightly` (or `tuner auto --model {args.model}`) "
                "re-tunes it",
                file=sys.stderr,
            )
