"""Timing in the pyperf manner, inside a trial worker (docs/measurement.md).

1. Warm up in windows of calls until the median of a window is within
   ``settle_tolerance`` of the window before (caches, allocator pools, lazy kernels
   and the thread pool all settle at their own pace), within a minimum number of
   calls and seconds, and a maximum; a warm-up that never settles is flagged.
2. Calibrate: from the settled call time, plan how many calls fill ``min_seconds``
   (never fewer than ``min_calls``). The count is fixed before timing starts, so when
   to stop never depends on the values being measured.
3. Time every call with the garbage collector off (it would fire inside some calls
   and not others; pyperf disables it too). The first ``short_calls`` calls are the
   short first measurement: early stopping looks at their median and may end the
   trial there.
4. Keep every sample; summarise with robust statistics; flag what makes a result
   less trustworthy.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.trial.spec import MeasureSettings

# Stability flags, as stored with a trial and shown by `tuner history`.
UNSTABLE = "unstable"  # coefficient of variation >= 10%
OUTLIERS = "outliers"  # more than 1% of the calls took over 1.5x the median
FEW_SAMPLES = "few-samples"  # fewer than MIN_SAMPLES timed calls
NOT_SETTLED = "not-settled"  # the warm-up hit its time limit before timings settled
NOISY = "noisy"  # other processes used the trial's CPUs while it was timed (set by the parent)

MIN_SAMPLES = 20
CV_LIMIT = 0.10
OUTLIER_RATIO = 1.5
OUTLIER_SHARE = 0.01
# A warm-up window aims at this many seconds, so slow calls do not make it endless.
_WINDOW_TARGET_S = 0.1
_MIN_WINDOW = 3
# Below this, a change between windows is timer and interpreter jitter, not warming.
_ABS_TOLERANCE_MS = 0.005


@dataclass
class WarmUp:
    calls: int
    seconds: float
    settled: bool
    call_ms: float  # median of the last window: the calibration estimate


@dataclass
class Measurement:
    samples_ms: list[float]
    warmup: WarmUp
    planned_calls: int
    short_ms: list[float] = field(default_factory=list)  # the first short_calls samples
    stopped_early: bool = False  # the short measurement was above prune_above_ms


def warm_up(call: Callable[[], Any], settings: MeasureSettings) -> WarmUp:
    """Call until timings settle (see the module docstring); every call here is discarded."""
    clock = time.perf_counter_ns
    start = clock()
    limit_ns = max(settings.max_warmup_seconds, settings.warmup_seconds) * 1e9
    calls = 0
    previous: float | None = None
    window_median = math.nan
    window = max(_MIN_WINDOW, settings.settle_window)
    while True:
        times = []
        for _ in range(window):
            t0 = clock()
            call()
            times.append((clock() - t0) / 1e6)
        calls += len(times)
        window_median = _median(times)
        elapsed = clock() - start
        enough = calls >= settings.warmup_calls and elapsed >= settings.warmup_seconds * 1e9
        steady = previous is not None and abs(window_median - previous) <= max(
            settings.settle_tolerance * previous, _ABS_TOLERANCE_MS
        )
        if enough and steady:
            return WarmUp(calls, elapsed / 1e9, True, window_median)
        if elapsed >= limit_ns:
            return WarmUp(calls, elapsed / 1e9, False, window_median)
        previous = window_median
        # Windows of about _WINDOW_TARGET_S: many fast calls, or a few slow ones.
        fit = int(_WINDOW_TARGET_S * 1e3 / window_median) if window_median > 0 else settings.settle_window
        window = max(_MIN_WINDOW, min(settings.settle_window, fit))


def planned_calls(call_ms: float, settings: MeasureSettings) -> int:
    """Enough calls to fill min_seconds at ``call_ms`` each, within [min_calls, max_calls]."""
    wanted = math.ceil(settings.min_seconds * 1e3 / call_ms) if call_ms > 0 else settings.max_calls
    return max(settings.min_calls, min(settings.max_calls, wanted))


def measure(call: Callable[[], Any], settings: MeasureSettings) -> Measurement:
    """Warm up, calibrate, then time the planned calls with gc off."""
    warm = warm_up(call, settings)
    planned = planned_calls(warm.call_ms, settings)
    short = settings.short_calls if settings.prune_above_ms is not None else 0
    clock = time.perf_counter_ns
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = clock()
        max_ns, min_ns = settings.max_seconds * 1e9, settings.min_seconds * 1e9
        short_ns = settings.short_seconds * 1e9
        checked = short == 0
        while True:
            t0 = clock()
            call()
            t1 = clock()
            samples.append((t1 - t0) / 1e6)
            elapsed = t1 - start
            if not checked and len(samples) >= short and elapsed >= short_ns:
                checked = True
                assert settings.prune_above_ms is not None
                if _median(samples) > settings.prune_above_ms:
                    return Measurement(samples, warm, planned, list(samples), stopped_early=True)
                short = len(samples)
            if len(samples) >= settings.max_calls or elapsed >= max_ns:
                break
            if checked and len(samples) >= planned and elapsed >= min_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(samples, warm, planned, samples[:short] if short else [])


def time_calls(call: Callable[[], Any], settings: MeasureSettings) -> list[float]:
    """Warm up until settled, then return every timed call in milliseconds."""
    return measure(call, settings).samples_ms


def _median(values: list[float]) -> float:
    return percentile(sorted(values), 50)


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
    median = percentile(values, 50)
    return {
        "n": n,
        "median": median,
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": mean,
        "stdev": stdev,
        "cv": stdev / mean if mean > 0 else math.nan,
        "min": values[0],
        "max": values[-1],
        "outlier_share": sum(1 for v in values if v > OUTLIER_RATIO * median) / n,
    }


def stability_flags(stats: dict[str, float], settled: bool = True) -> list[str]:
    """The flags that make a measurement less trustworthy (pyperf's checks, made robust
    to the long right tail latencies have: one slow call is not an outlier problem)."""
    flags = []
    if stats.get("cv", 0) >= CV_LIMIT:
        flags.append(UNSTABLE)
    if stats.get("outlier_share", 0) > OUTLIER_SHARE:
        flags.append(OUTLIERS)
    if stats.get("n", 0) < MIN_SAMPLES:
        flags.append(FEW_SAMPLES)
    if not settled:
        flags.append(NOT_SETTLED)
    return flags


def stability_warnings(stats: dict[str, float], settled: bool = True, flags: Sequence[str] | None = None) -> list[str]:
    """The flags in plain words, as pyperf warns that a benchmark "seems unstable".

    ``flags``: the flags as stored with a trial or run (they include ``noisy``, which
    the parent sets); default: those ``stats`` and ``settled`` raise. ``stats`` gives
    the figures (``summarize`` of the samples); where one is missing, the warning
    names the threshold instead.
    """
    cv, share, n = stats.get("cv"), stats.get("outlier_share"), stats.get("n")
    words = {
        UNSTABLE: f"unstable: stdev is {cv:.0%} of the mean"
        if cv is not None and math.isfinite(cv)
        else f"unstable: stdev is {CV_LIMIT:.0%} of the mean or more",
        OUTLIERS: f"outliers: {share:.1%} of calls took over {OUTLIER_RATIO}x the median"
        if share is not None
        else f"outliers: over {OUTLIER_SHARE:.0%} of calls took over {OUTLIER_RATIO}x the median",
        FEW_SAMPLES: f"only {int(n)} samples" if n is not None else f"fewer than {MIN_SAMPLES} samples",
        NOT_SETTLED: "the warm-up did not settle",
        NOISY: "noisy: other processes used its CPUs while it was timed",
    }
    found = stability_flags(stats, settled) if flags is None else list(flags)
    return [words.get(f, f) for f in found]
