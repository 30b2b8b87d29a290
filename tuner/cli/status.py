"""``tuner status``: is each stored winner still right for this machine today?

For every workload this machine (or a previous incarnation of it, or a similar
machine) tuned: fresh, stale with the reasons (hardware changed: what; a library its
backend uses, old -> new; search space changed; model weights changed; tuner version),
drifted (the last `tuner verify` measured a speedup whose interval excludes the
stored one), missing (never tuned with this hardware and software) or unavailable
(the model is not found here). `tuner nightly` acts on this table (docs/nightly.md).
"""

from __future__ import annotations

import argparse
import json

from tuner.cli.common import add_db_argument


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="whether each stored winner is fresh, stale, drifted or missing here",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="only this model (the name it was tuned under)")
    p.add_argument("--json", action="store_true", help="the table as JSON, with what each winner depends on")
    add_db_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.nightly import assess
    from tuner.store import Store

    machine = detect()
    store = Store.open(args.db, read_only=True)  # it only reads: works on a read-only image, creates nothing
    try:
        statuses = [s for s in assess(store, machine) if args.model is None or s.model == args.model]
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {
                    "machine": {
                        "hostname": machine.hostname,
                        "fingerprint": machine.fingerprint,
                        "hardware_fingerprint": machine.hardware_fingerprint,
                        "cpu": machine.cpu.model_name,
                        "libraries": machine.libraries,
                    },
                    "winners": [s.to_dict() for s in statuses],
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    print(f"machine {machine.hostname}: {machine.cpu.model_name}, fingerprint {machine.fingerprint}")
    if not statuses:
        print(
            "no stored winner for this machine, a previous incarnation of it or a similar machine; "
            "run `tuner auto --model M` first"
        )
        return 0
    print_table(statuses)
    return 0


def print_table(statuses) -> None:
    rows = [(s.model, str(s.seq_len), str(s.batch), s.objective, s.state, _winner(s)) for s in statuses]
    head = ("model", "seq", "batch", "objective", "state", "winner")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    for row, status in zip([head, *rows], [None, *statuses]):
        print(
            "  ".join(
                cell.ljust(w) if i not in (1, 2) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            )
            + "  "
            + row[-1]
        )
        if status is None:
            continue
        for reason in status.reasons:
            print(f"    {reason}")
        if status.state == "fresh":
            verify = status.verify
            print(
                f"    verified {verify.when:%Y-%m-%d %H:%M} UTC: {verify.describe()}"
                if verify
                else "    not verified since it was chosen (`tuner verify`)"
            )


def _winner(status) -> str:
    winner = status.winner
    if winner is None:
        return "-"
    best = winner.best
    config = best.config
    name = f"{config.get('backend')} {config.get('precision', '')}".strip()
    speedup = f" {best.speedup:.2f}x" if best.speedup is not None else ""
    where = "" if status.source == "here" else f" (from {winner.machine.hostname}, {status.source})"
    return f"{name}{speedup}, chosen {best.updated:%Y-%m-%d}{where}"
