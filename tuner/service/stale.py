"""Which stored results no longer describe their machine, for the overview.

``tuner status`` (tuner/nightly/status.py) judges the winners of the machine it runs
on, against that machine detected now, and also weighs the model's hash, the search
space, the tuner version and the last verify. The dashboard detects nothing (it may
run anywhere, on a fleet's database) and judges every machine from the stored rows
alone: a machine row's results are stale when a newer row of the same hostname (seen
later) has another hardware or software fingerprint, i.e. that host has been
re-detected since with other hardware or other library versions. What changed is
said in ``tuner status``'s words (tuner.nightly.depends).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner.nightly.depends import hardware_changes


def stale_reasons(machines: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """{machine id: why its results are stale} for the machines whose are."""
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for machine in machines:
        by_host.setdefault(machine["hostname"], []).append(machine)
    reasons: dict[int, str] = {}
    for rows in by_host.values():
        if len(rows) < 2:
            continue
        newest = max(rows, key=lambda m: (m["last_seen"], m["id"]))
        for machine in rows:
            if machine is newest:
                continue
            if machine["hardware_fingerprint"] != newest["hardware_fingerprint"]:
                hardware = hardware_changes(machine.get("info") or {}, newest.get("info") or {})
                what = f": {'; '.join(hardware)}" if hardware else ""
                reasons[machine["id"]] = (
                    f"the hardware of {machine['hostname']} changed since{what} "
                    f"(machine {newest['id']}, seen {newest['last_seen']:%Y-%m-%d})"
                )
            elif machine["software_fingerprint"] != newest["software_fingerprint"]:
                changed = _library_changes(machine.get("info") or {}, newest.get("info") or {})
                what = f": {changed}" if changed else ""
                reasons[machine["id"]] = (
                    f"the software of {machine['hostname']} changed since{what} "
                    f"(machine {newest['id']}, seen {newest['last_seen']:%Y-%m-%d})"
                )
    return reasons


def _library_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    before = old.get("libraries") or {}
    after = new.get("libraries") or {}
    changes = [
        f"{name} {before.get(name) or 'absent'} -> {after.get(name) or 'absent'}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    return ", ".join(changes)
