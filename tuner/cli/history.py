"""``tuner history``: every trial of the studies of a model, with status, stability
flags and reason; ``--pareto`` shows each study's latency-throughput front."""

from __future__ import annotations

import argparse
import dataclasses
import json

from tuner.cli.common import add_db_argument, format_accuracy, format_ms, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("history", help="list the trials of a model's studies", description=__doc__)
    p.add_argument("--model", default=None, help="model id or folder (default: every model)")
    p.add_argument("--seq-len", type=positive_int, default=None, metavar="S", help="only the studies of this length")
    p.add_argument("--all-machines", action="store_true", help="include studies of other machine fingerprints")
    p.add_argument(
        "--pareto", action="store_true", help="only the trials on each study's latency-throughput Pareto front"
    )
    p.add_argument("--json", action="store_true", help="every study and trial as JSON")
    add_db_argument(p)
    p.set_defaults(func=run)


def _config_summary(config: dict) -> str:
    skip = ("backend", "precision")
    return " ".join(f"{k}={v}" for k, v in config.items() if k not in skip)


def _noise_note(trial) -> str:
    """Why a trial is flagged noisy, in a few words."""
    during = (trial.noise or {}).get("during") or {}
    if not during.get("noisy"):
        return ""
    before = (trial.noise or {}).get("before") or {}
    names = [f"{p.get('name', '?')}:{p['pid']}" for p in before.get("busy_processes", [])[:3]]
    who = f" ({', '.join(names)})" if names else ""
    return f"  [noise: others used {during.get('other_cpu', 0):.2f} CPUs{who}]"


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.lookup import model_key
    from tuner.hardware import detect
    from tuner.store import Store

    fingerprint = None if args.all_machines else detect().fingerprint
    model = model_key(args.model) if args.model else None
    store = Store.open(args.db, read_only=True)  # works on a read-only image; creates nothing
    try:
        studies = [
            s
            for s in store.studies(fingerprint=fingerprint, model=model)
            if args.seq_len is None or s.seq_len == args.seq_len
        ]
        listing = [(s, store.trials(s.id)) for s in studies]
    finally:
        store.close()
    if args.pareto:
        listing = [(s, [t for t in trials if t.number in set(s.pareto or [])]) for s, trials in listing]
    if args.json:
        print(
            json.dumps(
                [
                    {"study": dataclasses.asdict(s), "trials": [dataclasses.asdict(t) for t in trials]}
                    for s, trials in listing
                ],
                indent=2,
                default=str,
            )
        )
        return 0
    if not listing:
        print(
            "no studies stored"
            + (" for this model on this machine" if model else "")
            + "; run `tuner auto --model M` first"
        )
        return 0
    for study, trials in listing:
        if args.pareto:
            _print_front(study, trials)
        else:
            _print_trials(study, trials)
    return 0


def _print_trials(study, trials: list) -> None:
    print(
        f"study {study.id}: seq {study.seq_len}, batch {study.batch}, objective {study.objective}, "
        f"{len(trials)} trials, {study.status}"
    )
    print(
        f"  {'#':>3} {'status':<11} {'backend':<12} {'prec':<5} {'median':>8} {'p90':>8} {'flags':<20} "
        f"{'accuracy':<28} config / reason"
    )
    for t in trials:
        detail = _config_summary(t.config)
        if t.reason:
            detail += f"  <- {t.reason}"
        detail += _noise_note(t)
        flags = ",".join(t.flags or []) or "-"
        print(
            f"  {t.number:>3} {t.status:<11} {t.config.get('backend', '-'):<12} "
            f"{t.config.get('precision', '-'):<5} {format_ms(t.median_ms):>8} {format_ms(t.p90_ms):>8} "
            f"{flags:<20} {format_accuracy(t.accuracy):<28} {detail}"
        )


def _print_front(study, front: list) -> None:
    from tuner.search.pareto import throughput_of

    print(
        f"study {study.id}: seq {study.seq_len}, batch {study.batch}, objective {study.objective}: "
        f"Pareto front, {len(front)} of {study.n_trials} trials (lower latency, higher throughput)"
    )
    if study.pareto is None:
        print("  not computed (a study stored before the front was kept); run `tuner auto` again to store it")
        return
    print(f"  {'#':>3} {'median ms':>10} {'inf/s':>10}  {'backend':<12} {'prec':<5} config")
    for t in sorted(front, key=lambda t: t.median_ms or 0.0):
        rate = throughput_of(t.median_ms, t.throughput, study.batch)
        print(
            f"  {t.number:>3} {format_ms(t.median_ms):>10} {rate or 0:>10.1f}  {t.config.get('backend', '-'):<12} "
            f"{t.config.get('precision', '-'):<5} {_config_summary(t.config)}"
        )
