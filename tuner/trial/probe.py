"""What a trial process really got, read from the kernel rather than trusted.

Requested and effective settings can differ silently (numactl falling back, an
OpenMP runtime pinning the parent, a preload library not found); the parent compares
the two and records a trial whose settings did not take as invalid.
"""

from __future__ import annotations

import os
import re

# Shared libraries whose presence in /proc/self/maps decides how a trial ran.
TRACKED_LIBRARIES = {
    "jemalloc": re.compile(r"libjemalloc"),
    "tcmalloc": re.compile(r"libtcmalloc"),
    "iomp5": re.compile(r"libiomp5"),
    "gomp": re.compile(r"libgomp"),
}
TRACKED_ENV_PREFIXES = ("OMP_", "KMP_", "MALLOC_CONF", "LD_PRELOAD", "GOMP_")


def mapped_libraries(maps_text: str) -> dict[str, str]:
    """Tracked library name -> path of the first mapping found."""
    found: dict[str, str] = {}
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5]
        for name, pattern in TRACKED_LIBRARIES.items():
            if name not in found and pattern.search(os.path.basename(path)):
                found[name] = path
    return found


def _status_field(name: str) -> str | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def probe() -> dict:
    """CPU mask, allowed memory nodes, mapped runtimes and the variables this process saw."""
    try:
        with open("/proc/self/maps") as f:
            libraries = mapped_libraries(f.read())
    except OSError:
        libraries = {}
    return {
        "cpus": sorted(os.sched_getaffinity(0)),
        "mems_allowed": _status_field("Mems_allowed_list"),
        "libraries": libraries,
        "env": {k: v for k, v in os.environ.items() if k.startswith(TRACKED_ENV_PREFIXES)},
    }


def differences(requested: dict, effective: dict) -> list[str]:
    """Each way the effective settings differ from the requested ones, in words."""
    problems = []
    want_cpus = requested.get("cpus")
    if want_cpus is not None and sorted(want_cpus) != effective.get("cpus"):
        problems.append(f"asked for CPUs {want_cpus}, got {effective.get('cpus')}")
    want_threads = requested.get("threads")
    got_threads = effective.get("threads")
    if want_threads is not None and got_threads is not None and want_threads != got_threads:
        problems.append(f"asked for {want_threads} threads, the framework uses {got_threads}")
    return problems
