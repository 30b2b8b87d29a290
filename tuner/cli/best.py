"""``tuner best``: the stored winner for this machine, in a form a deploy script reads."""

from __future__ import annotations

import argparse
import json

from tuner.cli.common import add_db_argument


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("best", help="print the stored winning configuration", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--seq-len", type=int, default=None, help="which tuned length (required by env/shell when several)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--objective", default="p50", choices=["p50", "p90", "p99", "throughput"])
    p.add_argument("--format", default="json", choices=["json", "env", "shell"],
                   help="json: everything; env: export lines to eval; shell: a command prefix")
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.lookup import best_config, best_configs

    if args.format == "json":
        found = best_configs(args.model, args.seq_len, args.batch, args.objective, args.db)
        if not found:  # same message as the single lookup
            best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
        print(json.dumps([b.to_dict() for b in found], indent=2, sort_keys=True))
        return 0
    best = best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
    if args.format == "env":
        print("\n".join(best.env_lines()))
    else:
        print(best.shell_prefix())
    return 0
