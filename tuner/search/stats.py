"""How sure is a speedup? A two-level bootstrap over fresh processes and their calls.

Timings vary at two levels: between calls of one process, and between processes
(each gets its own memory layout, page placement and thread placement). Pooling all
calls and testing them as if independent would call a 1% difference "significant"
from ten thousand calls of two lucky processes. So each bootstrap resample draws
processes with replacement, then calls with replacement inside each drawn process,
and computes the objective's statistic on the pooled draw; the speedup's 95%
confidence interval is the 2.5 and 97.5 percentiles of the resampled ratios. A
speedup is significant when its interval excludes 1.

With k processes per side the interval cannot be narrower than the spread between
processes allows, and with few processes it is too narrow: 3 per side is the least
the finalists accept, 5 what they and `tuner verify` use by default
(benchmarks/ci_coverage.py measures how often each contains the true speedup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.vocabulary import Objective

CONFIDENCE = 0.95
RESAMPLES = 2000
# Calls drawn per process in each resample: enough for a stable median and p99 of
# one process, few enough to keep a resample cheap. Drawing fewer calls than a
# process has widens the interval a little (conservative, never optimistic).
CALLS_PER_PROCESS = 400

_QUANTILES: dict[str, float] = {
    Objective.P50: 50.0,
    Objective.P90: 90.0,
    Objective.P99: 99.0,
    Objective.THROUGHPUT: 50.0,
}


def statistic(objective: str, samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """The per-call latency statistic the objective ranks by (throughput: the median
    latency, of which single-instance throughput is the inverse)."""
    try:
        q = _QUANTILES[objective]
    except KeyError:
        raise ValueError(f"no latency statistic for objective {objective!r}") from None
    # np.median is the same figure as the 50th percentile, several times faster on a
    # resample's thousands of calls.
    return np.median(samples, axis=axis) if q == 50.0 else np.percentile(samples, q, axis=axis)


def pooled_statistic(runs: Sequence[Sequence[float] | np.ndarray], objective: str = Objective.P50) -> float:
    """The statistic of every process's calls pooled, each process weighing the same
    (as in a resample, which draws as many calls from each). Weighing calls instead
    would let a fast process, which fits more calls into its timed seconds, outvote a
    slow one, and put the point estimate outside its own interval on a noisy host."""
    kept = [np.asarray(r, dtype=np.float64) for r in runs if len(r)]
    if not kept:
        raise ValueError("a statistic needs at least one measured process")
    values = np.concatenate(kept)
    weights = np.concatenate([np.full(len(r), 1.0 / len(r)) for r in kept])
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    # Each call at the middle of its weight (Hazen's plotting position).
    positions = (np.cumsum(weights) - weights / 2) / weights.sum()
    q = _QUANTILES.get(objective)
    if q is None:
        raise ValueError(f"no latency statistic for objective {objective!r}")
    return float(np.interp(q / 100.0, positions, values))


@dataclass(frozen=True)
class Speedup:
    """candidate vs baseline: > 1 means the candidate is better."""

    point: float
    low: float
    high: float
    confidence: float
    baseline_runs: int
    candidate_runs: int

    @property
    def significant(self) -> bool:
        return self.low > 1.0

    def describe(self) -> str:
        return f"{self.point:.2f}x ({self.confidence:.0%} CI {self.low:.2f}-{self.high:.2f})"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "speedup": self.point,
            "low": self.low,
            "high": self.high,
            "significant": self.significant,
            "baseline_runs": self.baseline_runs,
            "candidate_runs": self.candidate_runs,
        }


def _resampled(runs: list[np.ndarray], objective: str, rng: np.random.Generator, resamples: int) -> np.ndarray:
    k = len(runs)
    m = min(CALLS_PER_PROCESS, max(len(r) for r in runs))
    # Calls first: every process resampled to m calls, shape (resamples, k, m)...
    calls = np.stack([r[rng.integers(0, len(r), size=(resamples, m))] for r in runs], axis=1)
    # ...then processes: each resample draws k of them with replacement.
    chosen = rng.integers(0, k, size=(resamples, k))
    pooled = np.take_along_axis(calls, chosen[:, :, None], axis=1).reshape(resamples, k * m)
    return statistic(objective, pooled, axis=1)


def latency_speedup(
    baseline_runs: Sequence[Sequence[float]],
    candidate_runs: Sequence[Sequence[float]],
    objective: str = Objective.P50,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Speedup:
    """Speedup of the candidate's latency statistic over the baseline's, from the
    per-call samples of each fresh process (runs without samples are ignored)."""
    base = [np.asarray(r, dtype=np.float64) for r in baseline_runs if len(r)]
    cand = [np.asarray(r, dtype=np.float64) for r in candidate_runs if len(r)]
    if not base or not cand:
        raise ValueError("a speedup needs at least one measured process on each side")
    point = pooled_statistic(base, objective) / pooled_statistic(cand, objective)
    rng = np.random.default_rng(seed)
    ratios = _resampled(base, objective, rng, resamples) / _resampled(cand, objective, rng, resamples)
    return interval(point, ratios, len(base), len(cand), confidence)


def resampled_statistic(
    runs: Sequence[Sequence[float]],
    objective: str = Objective.P50,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """The objective's statistic of each two-level resample of one side's processes.
    Two sides resampled independently give the same interval as ``latency_speedup``
    (``interval(point, base / cand, ...)``), and a side resampled once serves every
    comparison it is in (the finalists' leader against each of the others)."""
    kept = [np.asarray(r, dtype=np.float64) for r in runs if len(r)]
    if not kept:
        raise ValueError("a speedup needs at least one measured process on each side")
    return _resampled(kept, objective, np.random.default_rng(seed), resamples)


def resampled_mean(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The mean of each resample of one figure per process (``rate_speedup``'s side)."""
    kept = np.asarray([v for v in values if v], dtype=np.float64)
    if not len(kept):
        raise ValueError("a speedup needs at least one measured process on each side")
    rng = np.random.default_rng(seed)
    return kept[rng.integers(0, len(kept), size=(resamples, len(kept)))].mean(axis=1)


def interval(
    point: float, ratios: np.ndarray, baseline_runs: int, candidate_runs: int, confidence: float = CONFIDENCE
) -> Speedup:
    """A speedup from its point estimate and its resampled ratios (> 1: the candidate is better)."""
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Speedup(point, float(low), float(high), confidence, baseline_runs, candidate_runs)


def rate_speedup(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Speedup:
    """Speedup of one figure per process where higher is better (aggregate throughput
    of a multi-instance run): ratio of means, processes resampled with replacement."""
    base = np.asarray([v for v in baseline if v], dtype=np.float64)
    cand = np.asarray([v for v in candidate if v], dtype=np.float64)
    if not len(base) or not len(cand):
        raise ValueError("a speedup needs at least one measured process on each side")
    rng = np.random.default_rng(seed)
    b = base[rng.integers(0, len(base), size=(resamples, len(base)))].mean(axis=1)
    c = cand[rng.integers(0, len(cand), size=(resamples, len(cand)))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(c / b, [tail, 100 - tail])
    return Speedup(float(cand.mean() / base.mean()), float(low), float(high), confidence, len(base), len(cand))
