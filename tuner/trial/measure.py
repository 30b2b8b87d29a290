"""Timing in the pyperf manner: warm up, then time at least a minimum number of calls
and of seconds, keep every sample, and summarise with robust statistics."""

from __future__ import annotations

import gc
import math
import time
from typing import Any, Callable

from tuner.trial.spec import MeasureSettings


def time_calls(call: Callable[[], Any], settings: MeasureSettings) -> list[float]:
    """Warm up, then return every timed call in milliseconds."""
    _run_for(call, settings.warmup_calls, settings.warmup_seconds, settings.warmup_calls * 100, 5.0)
    # The collector would fire inside some calls and not others; pyperf disables it too.
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return _run_for(call, settings.min_calls, settings.min_seconds, settings.max_calls, settings.max_seconds)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run_for(call: Callable[[], Any], min_calls: int, min_s: float, max_calls: int, max_s: float) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    min_ns, max_ns = min_s * 1e9, max_s * 1e9
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        elapsed = t1 - start
        if len(samples) >= max_calls or elapsed >= max_ns:
            return samples
        if len(samples) >= min_calls and elapsed >= min_ns:
            return samples


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_ms: list[float]) -> dict[str, float]:
    values = sorted(samples_ms)
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = sum(values) / n
    stdev = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {
        "n": n,
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": mean,
        "stdev": stdev,
        "cv": stdev / mean if mean > 0 else math.nan,
        "min": values[0],
        "max": values[-1],
    }


def stability_warnings(stats: dict[str, float]) -> list[str]:
    """Plain-words warnings, after pyperf's checks."""
    warnings = []
    if stats.get("n", 0) < 20:
        warnings.append(f"only {int(stats.get('n', 0))} samples")
    if stats.get("cv", 0) >= 0.10:
        warnings.append(f"unstable: stdev is {stats['cv']:.0%} of the mean")
    median = stats.get("median")
    if median and stats.get("max", 0) >= 1.5 * median:
        warnings.append(f"outliers: max {stats['max']:.2f} ms is {stats['max'] / median:.1f}x the median")
    return warnings
