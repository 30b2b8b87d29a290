"""``tuner history``: every trial of the studies of a model, with status and reason."""

from __future__ import annotations

import argparse
import dataclasses
import json

from tuner.cli.common import add_db_argument, format_accuracy, format_ms


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("history", help="list the trials of a model's studies", description=__doc__)
    p.add_argument("--model", default=None, help="model id or folder (default: every model)")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--all-machines", action="store_true", help="include studies of other machine fingerprints")
    p.add_argument("--json", action="store_true")
    add_db_argument(p)
    p.set_defaults(func=run)


def _config_summary(config: dict) -> str:
    skip = ("backend", "precision")
    return " ".join(f"{k}={v}" for k, v in config.items() if k not in skip)


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.lookup import model_key
    from tuner.hardware import detect
    from tuner.store import Store

    fingerprint = None if args.all_machines else detect().fingerprint
    model = model_key(args.model) if args.model else None
    store = Store.open(args.db)
    try:
        studies = [s for s in store.studies(fingerprint=fingerprint, model=model)
                   if args.seq_len is None or s.seq_len == args.seq_len]
        listing = [(s, store.trials(s.id)) for s in studies]
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"study": dataclasses.asdict(s), "trials": [dataclasses.asdict(t) for t in trials]}
                          for s, trials in listing], indent=2, default=str))
        return 0
    if not listing:
        print("no studies stored" + (" for this model on this machine" if model else "") +
              "; run `tuner auto --model M` first")
        return 0
    for study, trials in listing:
        print(f"study {study.id}: seq {study.seq_len}, batch {study.batch}, objective {study.objective}, "
              f"{len(trials)} trials, {study.status}")
        print(f"  {'#':>3} {'status':<11} {'backend':<12} {'prec':<5} {'median':>8} {'p90':>8}  "
              f"{'accuracy':<28} config / reason")
        for t in trials:
            detail = _config_summary(t.config)
            if t.reason:
                detail += f"  <- {t.reason}"
            print(f"  {t.number:>3} {t.status:<11} {t.config.get('backend', '-'):<12} "
                  f"{t.config.get('precision', '-'):<5} {format_ms(t.median_ms):>8} {format_ms(t.p90_ms):>8}  "
                  f"{format_accuracy(t.accuracy):<28} {detail}")
    return 0
