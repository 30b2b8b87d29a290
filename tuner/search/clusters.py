"""Is a configuration's spread between fresh processes noise, speed clusters, or drift?

On some hosts a fresh process is either fast or much slower, and which one it is is
decided when it starts (an AMX Xeon VM: 1.48-1.54 ms or 2.41-2.51 ms for the same
configuration, docs/measurement.md). Averaging such processes hides the fact that a
configuration measured once, or 3-5 times, was crowned or buried by which cluster its
processes fell into. So the per-process medians are tested for two speed clusters,
and, in the order they ran, for drift (a machine getting slower or faster over the
run), and what is found is reported with the numbers, not averaged away.

Two clusters (``find_clusters``): the log medians sorted, split at the largest gap
that leaves at least ``MIN_CLUSTER_SIZE`` processes on each side; clustered when the
gap is at least ``MIN_GAP`` (10%) and ``GAP_TO_SPREAD`` (5) times the pooled standard
deviation within the two sides. Calibrated by simulation: one cluster whose processes
spread with sd 0.12 of log latency (the Skylake VM's between-process spread) is called
clustered 5% of the time with 5 processes and 1% with 8; two clusters 1.7x apart (sd
0.03 each) are found whenever each holds 2 processes or more.

Drift (``find_drift``): Spearman's rank correlation between run order and log
median, its p-value from every permutation (or 4000 of them), and the change over
the run from the Theil-Sen slope; drifting when p < 0.05 and the change is 5% or more.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Fewer processes than this say nothing about clusters (2 on each side).
MIN_CLUSTER_SIZE = 2
MIN_PROCESSES = 2 * MIN_CLUSTER_SIZE
# Clusters closer than this (as a ratio) are not worth a word.
MIN_GAP = math.log(1.10)
# "Several times the within-cluster spread" (see the module docstring).
GAP_TO_SPREAD = 5.0
# Below this the within-cluster spread is timer and scheduler jitter (0.5%).
SPREAD_FLOOR = 0.005
# Drift: significance of the rank correlation and the least change worth reporting.
DRIFT_P = 0.05
DRIFT_MIN_CHANGE = 0.05
DRIFT_MIN_RUNS = 5
_EXACT_PERMUTATIONS = 8  # up to 8! orders are enumerated; more are sampled
_SAMPLED_PERMUTATIONS = 4000


@dataclass(frozen=True)
class Clusters:
    """Per-process medians (ms, sorted) and where they split (``fast``: how many are in
    the fast cluster; 0 when they form one cluster)."""

    medians: tuple[float, ...]
    fast: int = 0
    gap: float = 1.0  # the slow cluster's fastest median / the fast cluster's slowest
    spread: float = 0.0  # within-cluster sd of log medians (pooled)

    @property
    def clustered(self) -> bool:
        return self.fast > 0

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.fast, len(self.medians) - self.fast) if self.clustered else (len(self.medians),)

    @property
    def groups(self) -> tuple[tuple[float, ...], ...]:
        return (self.medians[: self.fast], self.medians[self.fast :]) if self.clustered else (self.medians,)

    @property
    def apart(self) -> float:
        """How much slower the slow cluster's median is than the fast one's (1.0: one cluster)."""
        if not self.clustered:
            return 1.0
        fast, slow = self.groups
        return _median(slow) / _median(fast)

    def describe(self, unit: str = "ms") -> str:
        if not self.medians:
            return "no process measured"
        ranges = [f"{len(g)} at {_range(g, unit)}" for g in self.groups]
        if not self.clustered:
            return f"one speed cluster ({len(self.medians)} processes at {_range(self.medians, unit)})"
        return f"2 speed clusters: {ranges[0]}, {ranges[1]} ({self.apart:.2f}x apart)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "clustered": self.clustered,
            "sizes": list(self.sizes),
            "apart": round(self.apart, 4),
            "gap": round(self.gap, 4),
            "spread": round(self.spread, 5),
            "medians": [round(m, 6) for m in self.medians],
        }


@dataclass(frozen=True)
class Drift:
    """Per-process medians in the order they ran: their trend."""

    runs: int
    rho: float = 0.0  # Spearman's rank correlation of order and median
    p: float = 1.0
    change: float = 1.0  # fitted last / first over the run (1.10: 10% slower by the end)

    @property
    def drifting(self) -> bool:
        return (
            self.runs >= DRIFT_MIN_RUNS
            and self.p < DRIFT_P
            and abs(math.log(self.change)) >= math.log(1 + DRIFT_MIN_CHANGE)
        )

    def describe(self) -> str:
        way = "slower" if self.change > 1 else "faster"
        return (
            f"drifting {abs(self.change - 1):.0%} {way} over {self.runs} processes in run order "
            f"(rank correlation {self.rho:+.2f}, p {self.p:.3f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifting": self.drifting,
            "runs": self.runs,
            "rho": round(self.rho, 4),
            "p": round(self.p, 4),
            "change": round(self.change, 4),
        }


def find_clusters(medians: Sequence[float]) -> Clusters:
    """Two speed clusters among per-process medians, or one (see the module docstring)."""
    values = sorted(float(m) for m in medians if m and m > 0)
    logs = np.log(values)
    n = len(values)
    if n < MIN_PROCESSES:
        return Clusters(tuple(values))
    gaps = np.diff(logs)  # gaps[i] lies between values[i] and values[i + 1]
    inner = range(MIN_CLUSTER_SIZE - 1, n - MIN_CLUSTER_SIZE)
    split = max(inner, key=lambda i: gaps[i]) + 1
    fast, slow = logs[:split], logs[split:]
    pooled = float(np.sqrt((((fast - fast.mean()) ** 2).sum() + ((slow - slow.mean()) ** 2).sum()) / (n - 2)))
    gap = float(gaps[split - 1])
    clustered = gap >= MIN_GAP and gap >= GAP_TO_SPREAD * max(pooled, SPREAD_FLOOR)
    return Clusters(tuple(values), split if clustered else 0, math.exp(gap), pooled)


def find_drift(medians_in_order: Sequence[float], seed: int = 0) -> Drift:
    """The trend of per-process medians over the order they ran in."""
    logs = np.log([float(m) for m in medians_in_order if m and m > 0])
    n = len(logs)
    if n < 3:
        return Drift(n)
    ranks = _ranks(logs)
    ranks -= ranks.mean()
    if n <= _EXACT_PERMUTATIONS:
        orders = np.array(list(itertools.permutations(range(n))), dtype=np.float64)
    else:
        rng = np.random.default_rng(seed)
        orders = rng.permuted(np.tile(np.arange(n, dtype=np.float64), (_SAMPLED_PERMUTATIONS, 1)), axis=1)
    orders -= (n - 1) / 2
    # Spearman's rho of each order with the medians (no ties among orders, so the
    # norm of every centred order is that of 0..n-1); the run order is 0..n-1 itself.
    norm = math.sqrt(float((orders[0] ** 2).sum() * (ranks**2).sum())) or 1.0
    rhos = orders @ ranks / norm
    rho = float((np.arange(n, dtype=np.float64) - (n - 1) / 2) @ ranks / norm)
    p = float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))
    slopes = [(logs[j] - logs[i]) / (j - i) for i in range(n) for j in range(i + 1, n)]
    change = math.exp(float(np.median(slopes)) * (n - 1))
    return Drift(n, float(rho), p, change)


def noise_lines(named: Sequence[tuple[str, Sequence[float]]], unit: str = "ms") -> list[str]:
    """Plain words for every (name, per-process medians in run order) whose processes
    fell into speed clusters or drifted; [] when none did."""
    lines = []
    for name, medians in named:
        clusters, drift = find_clusters(medians), find_drift(medians)
        if clusters.clustered:
            lines.append(f"{name}: {clusters.describe(unit)}")
        if drift.drifting:
            lines.append(f"{name}: {drift.describe()}")
    return lines


def host_clustered(named: Sequence[tuple[str, Sequence[float]]]) -> str | None:
    """One sentence when fresh processes on this host fell into speed clusters."""
    found = [(name, find_clusters(m)) for name, m in named]
    clustered = [(name, c) for name, c in found if c.clustered]
    if not clustered:
        return None
    sizes = ", ".join(f"{name} {'+'.join(map(str, c.sizes))} ({c.apart:.2f}x)" for name, c in clustered)
    return (
        f"fresh processes on this host fall into speed clusters (fast+slow processes: {sizes}); "
        "a configuration measured in few processes can be crowned or buried by which cluster it drew"
    )


def processes_notes(named: Sequence[tuple[str, Sequence[float]]], unit: str = "ms") -> list[str]:
    """The host's sentence (``host_clustered``) and each configuration's clusters and drift (``noise_lines``)."""
    host = host_clustered(named)
    return ([host] if host else []) + noise_lines(named, unit)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _median(values: Sequence[float]) -> float:
    return float(np.median(values))


def _range(values: Sequence[float], unit: str) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g} {unit}" if low == high else f"{low:.3g}-{high:.3g} {unit}"
