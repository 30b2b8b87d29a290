"""The latency-versus-throughput Pareto front of a study's trials.

A configuration is on the front when no other feasible one has both a lower median
latency and a higher throughput (at least as good in both, better in one). With one
instance per trial, throughput is the inverse of latency and the front is a single
point; it widens when trials trade latency for throughput (several instances on
fewer cores each, ``--objective throughput`` / ``pareto`` with the instances dimension).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(latency, throughput) a dominates b: no worse in both, better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def front(points: Sequence[tuple[K, float, float]]) -> list[K]:
    """Keys of the non-dominated points among (key, latency, throughput), by latency.
    Equal points are all kept: neither dominates the other."""
    kept = [
        (key, lat, thr) for key, lat, thr in points if not any(dominates((l2, t2), (lat, thr)) for _, l2, t2 in points)
    ]
    return [key for key, _, _ in sorted(kept, key=lambda p: (p[1], -p[2]))]


def throughput_of(median_ms: float | None, measured: float | None, batch: int) -> float | None:
    """The trial's throughput: measured (instances), else one instance's inverse latency."""
    if measured:
        return measured
    if median_ms:
        return 1000.0 * batch / median_ms
    return None
