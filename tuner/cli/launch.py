"""``tuner launch``: run a command under the stored winner's binding, allocator and
environment (LD_PRELOAD, MALLOC_CONF, OMP_*/KMP_*), replacing this process.

    tuner launch --model M --seq-len 128 --verbose -- uvicorn server:app --port 8000

Inside the command, ``tuner.load_best(M)`` loads the same configuration (from
TUNER_CONFIG, no database needed) and checks that the process got its settings.
"""

from __future__ import annotations

import argparse

from tuner.cli.common import add_db_argument, add_winner_arguments, non_negative_int
from tuner.vocabulary import SINGLE_OBJECTIVES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "launch",
        help="run a command under the winning binding, allocator and environment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_winner_arguments(p, SINGLE_OBJECTIVES)
    p.add_argument(
        "--instance",
        type=non_negative_int,
        default=None,
        metavar="I",
        help="throughput winners: run only this instance (0-based) instead of all of them",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="print what is applied (to stderr) first")
    add_db_argument(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.launch import launch
    from tuner.deploy.lookup import best_config

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    best = best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
    return launch(best, command, args.instance, args.verbose)
