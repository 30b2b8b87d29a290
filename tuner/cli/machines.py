"""``tuner machines``: the fleet, every machine the database has results from: its
fingerprint, hostname, CPU, ISA class, when it was first and last seen, and how many
studies and winners it has; this machine is marked."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from tuner.cli.common import add_db_argument
from tuner.hardware.similarity import isa_class

__all__ = ["add_parser", "describe_machines", "isa_class", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("machines", help="list the machines in the database (a fleet)", description=__doc__)
    p.add_argument("--json", action="store_true", help="print as JSON")
    add_db_argument(p)
    p.set_defaults(func=run)


def describe_machines(machines: list, counts: dict[int, tuple[int, int]], here: Any) -> list[dict[str, Any]]:
    """One plain dict per machine (what --json prints), this machine first."""
    rows = []
    for m in machines:
        cpu = (m.info or {}).get("cpu") or {}
        topology = (m.info or {}).get("topology") or {}
        studies, winners = counts.get(m.id, (0, 0))
        rows.append(
            {
                "fingerprint": m.fingerprint,
                "hardware_fingerprint": m.hardware_fingerprint,
                "software_fingerprint": m.software_fingerprint,
                "hostname": m.hostname,
                "cpu": cpu.get("model_name") or "?",
                "vendor": cpu.get("vendor"),
                "isa_class": isa_class(cpu),
                "cores": topology.get("cores"),  # physical cores, every socket
                "first_seen": m.first_seen.isoformat(),
                "last_seen": m.last_seen.isoformat(),
                "studies": studies,
                "winners": winners,
                "this_machine": m.fingerprint == here.fingerprint,
                # The same silicon under other library versions: its results are stale here, not foreign.
                "same_hardware": m.fingerprint != here.fingerprint
                and m.hardware_fingerprint == here.hardware_fingerprint,
            }
        )
    rows.sort(key=lambda r: (not r["this_machine"], not r["same_hardware"], r["hostname"], r["fingerprint"]))
    return rows


def run(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.store import Store
    from tuner.store._engine import describe

    here = detect()
    store = Store.open(args.db, read_only=True)  # it only reads: creates nothing
    try:
        rows = describe_machines(store.machines(), store.machine_counts(), here)
        where = describe(store.url)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no machines in {where}; run `tuner auto --model M` on each machine with --db pointing here")
        return 0
    print(f"{len(rows)} machine{'s' if len(rows) != 1 else ''} in {where}")
    header = ("", "fingerprint", "hostname", "cpu", "isa", "cores", "first seen", "last seen", "studies", "winners")
    table = [header] + [
        (
            "*" if r["this_machine"] else "~" if r["same_hardware"] else "",
            r["fingerprint"],
            r["hostname"],
            r["cpu"],
            r["isa_class"],
            str(r["cores"] or "?"),
            _when(r["first_seen"]),
            _when(r["last_seen"]),
            str(r["studies"]),
            str(r["winners"]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    numeric = {5, 8, 9}
    for line in table:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        print("  ".join(cells).rstrip())
    marks = []
    if any(r["this_machine"] for r in rows):
        marks.append("* this machine")
    else:
        marks.append(f"this machine ({here.fingerprint}) has no results here yet")
    if any(r["same_hardware"] for r in rows):
        marks.append("~ this machine's hardware with other library versions")
    print("; ".join(marks))
    return 0


def _when(iso: str) -> str:
    """UTC, to the minute."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
