"""``tuner export``: write the winning artifact (e.g. the int8 ONNX file), a
config.json a server can read, and run.sh that starts a command under the winning
binding and environment. Layout: docs/deploy.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.cli.common import add_db_argument, add_winner_arguments
from tuner.vocabulary import SINGLE_OBJECTIVES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write the winning artifact, config.json and run.sh", description=__doc__)
    add_winner_arguments(p, SINGLE_OBJECTIVES)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder to write (written beside it first, then moved into place: a failure leaves it as it was)",
    )
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.export import CONFIG_FILE, RUN_SCRIPT, export
    from tuner.deploy.lookup import best_config

    best = best_config(args.model, args.seq_len, args.batch, args.objective, args.db)
    data = export(best, args.out, args.force)
    artifact = data["artifact"]
    print(
        f"wrote {args.out}/model/ ({artifact['kind']}: {', '.join(artifact['files'])}), "
        f"{args.out}/{CONFIG_FILE}, {args.out}/{RUN_SCRIPT}"
    )
    print(f"run a server under the winning settings: {args.out}/{RUN_SCRIPT} CMD ARGS...")
    return 0
