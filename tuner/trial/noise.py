"""Is the machine quiet enough to time on?

Two views, both stored with each trial (docs/measurement.md):

- ``check_machine`` (the tuner, before a trial): load average, processes that used a
  CPU over a short window (psutil), the system-wide CPU use of others and the
  hypervisor's steal on the trial's CPUs (/proc/stat), and the frequency governor
  where the kernel exposes it.
- ``InterferenceMeter`` (the worker, around its timed calls): how much CPU time
  *other* processes got on the worker's own CPUs while it was being timed: the
  CPUs' busy time from /proc/stat minus the worker's own CPU time.

/proc/stat counts in clock ticks (1/100 s), so a figure over a short window has a
resolution of ``cpus x tick / seconds``; a window is judged noisy only when the other
load exceeds the limit by more than that resolution.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Average other load, in cores, on the trial's CPUs above which timings are not trusted.
NOISY_CPU = 0.2
# Share of the CPUs' time the hypervisor gave to other guests.
NOISY_STEAL = 0.05
# A process using at least this much of a core is named in the report.
BUSY_PROCESS_CPU = 0.1
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_STAT = Path("/proc/stat")
_CPUFREQ = Path("/sys/devices/system/cpu")


def read_cpu_times(cpus: Iterable[int], stat_text: str | None = None) -> tuple[float, float, float]:
    """(busy, steal, total) seconds summed over ``cpus`` since boot, from /proc/stat."""
    wanted = {f"cpu{c}" for c in cpus}
    text = stat_text if stat_text is not None else _STAT.read_text()
    busy = steal = total = 0.0
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in wanted:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time
        # is already inside user and nice.
        values = [int(v) for v in parts[1:9]] + [0] * (8 - len(parts[1:9]))
        user, nice, system, idle, iowait, irq, softirq, st = values
        busy += (user + nice + system + irq + softirq) * _TICK_S
        steal += st * _TICK_S
        total += (user + nice + system + idle + iowait + irq + softirq + st) * _TICK_S
    return busy, steal, total


def _judge(other_cpu: float, steal: float, resolution: float) -> list[str]:
    reasons = []
    if other_cpu - resolution >= NOISY_CPU:
        reasons.append(f"other processes used {other_cpu:.2f} CPUs of the trial's cores")
    if steal >= NOISY_STEAL:
        reasons.append(f"the hypervisor stole {steal:.0%} of the CPU time")
    return reasons


class InterferenceMeter:
    """Other processes' CPU use on this process's CPUs between ``start`` and ``stop``."""

    def __init__(self, cpus: Iterable[int] | None = None) -> None:
        self.cpus = sorted(cpus) if cpus is not None else sorted(os.sched_getaffinity(0))
        self._start: tuple[float, float, tuple[float, float, float]] | None = None

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time(), read_cpu_times(self.cpus))

    def stop(self) -> dict[str, Any]:
        assert self._start is not None, "start() first"
        wall0, own0, (busy0, steal0, total0) = self._start
        busy1, steal1, total1 = read_cpu_times(self.cpus)
        wall = time.perf_counter() - wall0
        own = time.process_time() - own0
        return summarize_window(self.cpus, wall, own, busy1 - busy0, steal1 - steal0, total1 - total0)


def summarize_window(
    cpus: list[int],
    wall_s: float,
    own_cpu_s: float,
    busy_s: float,
    steal_s: float,
    total_s: float,
) -> dict[str, Any]:
    """The figures of one window, and whether it was noisy."""
    wall_s = max(wall_s, 1e-9)
    # The CPUs' busy time includes ours; what is left was other processes (and the kernel).
    other = max(0.0, busy_s - own_cpu_s) / wall_s
    steal = steal_s / total_s if total_s > 0 else 0.0
    resolution = len(cpus) * _TICK_S / wall_s
    reasons = _judge(other, steal, resolution)
    return {
        "cpus": list(cpus),
        "seconds": round(wall_s, 3),
        "other_cpu": round(other, 3),
        "own_cpu": round(own_cpu_s / wall_s, 3),
        "steal": round(steal, 4),
        "resolution": round(resolution, 3),
        "noisy": bool(reasons),
        "reasons": reasons,
    }


def governors(cpus: Iterable[int], root: Path = _CPUFREQ) -> dict[str, str]:
    """CPU -> scaling governor; empty where the kernel does not expose cpufreq (VMs)."""
    found = {}
    for cpu in cpus:
        try:
            found[str(cpu)] = (root / f"cpu{cpu}" / "cpufreq" / "scaling_governor").read_text().strip()
        except OSError:
            continue
    return found


def _descendants_and_self() -> set[int]:
    import psutil

    me = psutil.Process()
    pids = {me.pid}
    try:
        pids.update(child.pid for child in me.children(recursive=True))
    except psutil.Error:
        pass
    return pids


def busy_processes(window_s: float, exclude: set[int]) -> tuple[list[dict[str, Any]], float]:
    """Processes that used at least BUSY_PROCESS_CPU of a core over ``window_s``, busiest
    first, and the seconds the sampling really spanned."""
    import psutil

    def snapshot() -> dict[int, tuple[psutil.Process, float]]:
        taken = {}
        for proc in psutil.process_iter():
            if proc.pid in exclude:
                continue
            try:
                times = proc.cpu_times()
            except psutil.Error:  # gone, or not ours to read
                continue
            taken[proc.pid] = (proc, times.user + times.system)
        return taken

    t0 = time.perf_counter()
    before = snapshot()
    time.sleep(window_s)
    after = snapshot()
    elapsed = time.perf_counter() - t0
    busy = []
    for pid, (proc, cpu1) in after.items():
        cpu0 = before.get(pid, (None, cpu1))[1]
        share = (cpu1 - cpu0) / elapsed
        if share < BUSY_PROCESS_CPU:
            continue
        entry: dict[str, Any] = {"pid": pid, "cpu": round(share, 3)}
        try:
            entry["name"] = proc.name()
            entry["cmdline"] = " ".join(proc.cmdline())[:120]
            entry["cpus"] = proc.cpu_affinity()
        except psutil.Error:
            pass
        busy.append(entry)
    busy.sort(key=lambda e: -e["cpu"])
    return busy, elapsed


def check_machine(cpus: Iterable[int] | None = None, window_s: float = 0.25) -> dict[str, Any]:
    """The machine's state before a trial on ``cpus`` (default: every CPU we may use).

    Takes about ``window_s`` seconds. The tuner's own process and its children are
    not counted as noise.
    """
    cpu_list = sorted(cpus) if cpus is not None else sorted(os.sched_getaffinity(0))
    own0 = time.process_time()
    busy0, steal0, total0 = read_cpu_times(cpu_list)
    processes, elapsed = busy_processes(window_s, _descendants_and_self())
    busy1, steal1, total1 = read_cpu_times(cpu_list)
    # Our own sampling costs CPU too; it is subtracted like a worker's own time.
    window = summarize_window(
        cpu_list,
        elapsed,
        time.process_time() - own0,
        busy1 - busy0,
        steal1 - steal0,
        total1 - total0,
    )
    found_governors = governors(cpu_list)
    slow = sorted({g for g in found_governors.values() if g != "performance"})
    warnings = (
        [
            f"CPU frequency governor {', '.join(slow)}: the clock may change between trials; "
            "`cpupower frequency-set -g performance` pins it"
        ]
        if slow
        else []
    )
    return {
        **window,
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "busy_processes": processes,
        "governors": found_governors or "not exposed",
        "warnings": warnings,
    }


def describe(report: dict[str, Any]) -> str:
    """One line for a warning: why the window was noisy, and who was busy."""
    text = "; ".join(report.get("reasons") or []) or "quiet"
    names = [f"{p.get('name', '?')} (pid {p['pid']}, {p['cpu']:.0%})" for p in report.get("busy_processes", [])[:3]]
    return text + (f"; busy: {', '.join(names)}" if names else "")
