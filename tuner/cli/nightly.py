"""``tuner nightly``: re-tune what the hardware or the software invalidated, verify
what is fresh, and keep a row of each run; safe to run from cron or a systemd timer.

It decides from the `tuner status` table: stale or missing winners are re-tuned
(warm-started from the previous winner and its finalists), a fresh winner not
confirmed for a week is verified (and re-tuned if it drifted), the rest is skipped.
It holds the machine lock, keeps within --budget across models, and a killed run
is resumed by the next one. Exit status: 0 nothing wrong, 3 a winner got slower or
a verify failed, 1 an error. docs/nightly.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from tuner.cli.common import (
    add_db_argument,
    duration,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

DEFAULT_AT = "03:00"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "nightly",
        help="re-tune stale or missing winners, verify fresh ones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--budget",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="wall-clock budget of the whole run, above 0, e.g. 1h (split across models)",
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="measured trials per re-tune (default: as last tuned, else 30)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="TOML: more models and workloads to keep tuned, and the run's defaults (docs/nightly.md)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, one reason per line; change nothing")
    p.add_argument("--json", action="store_true", help="the plan (--dry-run), the run or the last run as JSON")
    p.add_argument("--last", action="store_true", help="show the last nightly run of this machine")
    p.add_argument(
        "--rounds",
        type=int_at_least(3),
        default=None,
        metavar="R",
        help="verify: fresh processes per side (default: the config's, else 5; at least 3)",
    )
    p.add_argument(
        "--min-time",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="time each trial and replay for at least this long (default 1.0)",
    )
    p.add_argument(
        "--noise-wait",
        type=non_negative_float,
        default=3.0,
        metavar="SECONDS",
        help="before a run, wait up to this long for a busy machine to calm down (default 3)",
    )
    p.add_argument(
        "--noise-retries",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="re-run a trial or replay timed while other processes used its CPUs, up to N times (default 1)",
    )
    p.add_argument(
        "--lock-timeout",
        type=_duration_text,
        default="30m",
        metavar="DURATION",
        help="wait this long for another tuning run to release the machine, then exit 1 (default 30m)",
    )
    scheduling = p.add_argument_group("scheduling")
    scheduling.add_argument(
        "--install",
        choices=["systemd", "cron"],
        default=None,
        help="write a systemd service and timer, or a crontab line, that run this command nightly",
    )
    scheduling.add_argument("--uninstall", action="store_true", help="remove exactly what --install wrote")
    scheduling.add_argument("--user", action="store_true", help="the user's units or crontab, not the system's")
    scheduling.add_argument("--at", default=DEFAULT_AT, metavar="HH:MM", help=f"time of day (default {DEFAULT_AT})")
    scheduling.add_argument(
        "--print", action="store_true", dest="print_only", help="print what --install would write, write nothing"
    )
    add_db_argument(p)
    p.set_defaults(func=run)


def _duration(text: str) -> str:
    """A duration above 0, checked when the command line is parsed (kept as written:
    run() reads it with the config file's rules)."""
    duration(text)
    return text


def _duration_text(text: str) -> str:
    """A duration of 0 or more, checked when parsed, kept as written."""
    if text.strip() not in ("0", "0s", "0m", "0h"):
        duration(text)
    return text


def run(args: argparse.Namespace) -> int:
    from tuner.errors import UserError
    from tuner.nightly.config import load_config, parse_duration

    if args.uninstall:
        return _uninstall()
    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be at least 1")
    if args.rounds is not None and args.rounds < 3:
        raise UserError("--rounds must be at least 3: fewer fresh processes cannot bound a speedup")
    if args.min_time <= 0:
        raise UserError("--min-time must be positive, e.g. 1.0")
    budget = parse_duration(args.budget, "--budget") if args.budget else None
    lock_timeout = parse_duration(args.lock_timeout, "--lock-timeout")
    config = load_config(args.config)
    if args.install:
        return _install(args)
    if args.last:
        return _last(args)

    from tuner.hardware import detect
    from tuner.nightly.run import EXIT_ERROR, Nightly, RunSettings, plan_for, take_lock
    from tuner.store import Store

    settings = RunSettings(
        db_url=args.db,
        budget_s=budget,
        trials=args.trials,
        rounds=args.rounds or config.rounds or 5,
        min_time=args.min_time,
        noise_wait_s=args.noise_wait,
        noise_retries=args.noise_retries,
        lock_timeout_s=lock_timeout,
        config=config,
    )
    machine = detect()
    store = Store.open(args.db)
    try:
        if args.dry_run:
            planned = plan_for(store, machine, settings)
            if args.json:
                print(
                    json.dumps(
                        {
                            "machine": machine.fingerprint,
                            "hostname": machine.hostname,
                            "previous_hosts": planned.previous_hosts,
                            "plan": [i.to_dict() for i in planned.items],
                        },
                        indent=2,
                    )
                )
            else:
                _print_plan(machine, planned.items, planned.previous_hosts)
            return 0
        say = (
            (lambda line: print(line, file=sys.stderr, flush=True))
            if args.json
            else (lambda line: print(line, flush=True))
        )
        try:
            lock = take_lock(lock_timeout, "tuner nightly", say)
        except UserError as exc:  # LockedError: the scheduler sees 1, the journal the line
            print(f"tuner nightly: {exc}", file=sys.stderr)
            return EXIT_ERROR
        try:
            code, record = Nightly(store, machine, settings, say).run()
        finally:
            lock.__exit__(None, None, None)
    finally:
        store.close()
    if args.json:
        print(json.dumps(_run_dict(record), indent=2, default=str))
    return code


def _print_plan(machine, plan, previous_hosts) -> None:
    print(
        f"plan for {machine.hostname} ({machine.cpu.model_name}, fingerprint {machine.fingerprint}); "
        "--dry-run: nothing is changed"
    )
    if previous_hosts:
        print(
            f"(the winners of {', '.join(previous_hosts)} count as this machine's past: the database came from there)"
        )
    if not plan:
        print(
            "nothing to do: no stored winner for this machine, a previous incarnation or a similar machine, "
            "and no --config"
        )
        return
    width = max(len(i.label()) for i in plan)
    for item in plan:
        print(f"  {item.label().ljust(width)}  {item.action:<7}  {item.reason}")


def _run_dict(record) -> dict:
    return {
        "id": record.id,
        "hostname": record.hostname,
        "fingerprint": record.fingerprint,
        "started": record.started.isoformat(),
        "finished": record.finished.isoformat() if record.finished else None,
        "status": record.status,
        "exit_code": record.exit_code,
        "settings": record.settings,
        "plan": record.plan,
        "results": record.results,
        "summary": record.summary,
    }


def _last(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.nightly.run import describe_change
    from tuner.store import Store

    machine = detect()
    store = Store.open(args.db)
    try:
        runs = store.nightly_runs(limit=1, hostname=machine.hostname) or store.nightly_runs(limit=1)
    finally:
        store.close()
    if not runs:
        print("no nightly run recorded in this database; `tuner nightly --dry-run` shows what one would do")
        return 0
    record = runs[0]
    if args.json:
        print(json.dumps(_run_dict(record), indent=2, default=str))
        return 0
    ended = f"{record.finished:%Y-%m-%d %H:%M} UTC" if record.finished else "-"
    code = "" if record.exit_code is None else f", exit {record.exit_code}"
    print(
        f"nightly run #{record.id} on {record.hostname}: {record.status}{code}; "
        f"started {record.started:%Y-%m-%d %H:%M} UTC, finished {ended}"
    )
    results = {r.get("key"): r for r in record.results or []}
    for item in record.plan:
        result = results.get(item.get("key"))
        label = f"{item['model']} seq {item['seq_len']}"
        print(f"  {label}: {item['action']}: {item['reason']}")
        if result is None:
            print("    not reached")
        elif result.get("outcome") != "skipped":
            print(f"    {describe_change(result)}")
    if record.summary:
        print(record.summary)
    return 0


def _install(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tuner.nightly.install import install, plan_install
    from tuner.store import Store

    store = Store.open(args.db)  # the resolved URL goes into the unit (and the schema is checked now)
    url = store.url
    store.close()
    options: list[str] = []
    if args.budget:
        options += ["--budget", args.budget]
    if args.trials is not None:
        options += ["--trials", str(args.trials)]
    config = str(Path(args.config).resolve()) if args.config else None
    if config:
        options += ["--config", config]
    if args.lock_timeout != "30m":
        options += ["--lock-timeout", args.lock_timeout]
    plan = plan_install(args.install, args.user, args.at, url, options, config)
    if args.print_only:
        for path, text in plan.files.items():
            print(f"# {path}\n{text}")
        if plan.cron_line is not None:
            print(f"# your crontab (crontab -e)\n{plan.cron_line}")
        print(f"# then: {plan.enable}")
        return 0
    for line in install(plan):
        print(line)
    print(f"to enable it: {plan.enable}")
    return 0


def _uninstall() -> int:
    from tuner.nightly.install import uninstall

    for line in uninstall():
        print(line)
    return 0
