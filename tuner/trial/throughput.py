"""The throughput objective: N instances x M cores each, measured together.

As PyTorch's ``run_cpu --ninstances`` deploys a model, each instance is its own
process bound to its own slice of the cores (tuner.trial.plan); the tuner starts
them at once, each warms up and waits at a barrier, then all time calls back to back
for the same window. Aggregate throughput is the sum over instances of calls per
second of busy time, times the batch size.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.trial import spec as S
from tuner.trial.measure import summarize


@dataclass
class Barrier:
    """The worker's side: say ready on one pipe, wait for EOF on the other."""

    ready_fd: int
    go_fd: int

    def wait(self) -> None:
        os.write(self.ready_fd, b"r")
        os.close(self.ready_fd)
        os.read(self.go_fd, 1)  # returns b"" when the parent closes its end
        os.close(self.go_fd)


def _loop(call: Callable[[], Any], min_calls: int, seconds: float) -> list[float]:
    clock = time.perf_counter_ns
    samples: list[float] = []
    end = clock() + seconds * 1e9
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        if t1 >= end and len(samples) >= min_calls:
            return samples


def time_window(call: Callable[[], Any], settings: S.MeasureSettings, barrier: Barrier) -> list[float]:
    """Warm up alone, wait for every instance, then time calls for ``min_seconds``.

    A fixed window rather than a call count: instances of different speeds must
    overlap for the whole measurement, or the fast ones would be timed partly alone.
    """
    _loop(call, settings.warmup_calls, settings.warmup_seconds)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        barrier.wait()
        return _loop(call, 1, settings.min_seconds)
    finally:
        if gc_was_enabled:
            gc.enable()


def instance_throughput(samples_ms: list[float], batch: int) -> float:
    """Inferences per second of busy time for one instance's samples."""
    busy_s = sum(samples_ms) / 1000.0
    return batch * len(samples_ms) / busy_s if busy_s > 0 else 0.0


def combine(results: list[S.TrialResult], batch: int) -> S.TrialResult:
    """One trial result for all instances: failed if any failed; else every sample,
    the aggregate throughput, instance 0's accuracy, and every instance's probe."""
    for i, result in enumerate(results):
        if result.status != S.OK:
            reason = f"instance {i + 1} of {len(results)}: {result.reason}"
            return S.TrialResult(
                status=result.status,
                reason=reason,
                stderr_tail=result.stderr_tail,
                effective=result.effective,
                timings=result.timings,
            )
    samples = [s for r in results for s in r.samples_ms]
    stats = summarize(samples)
    per_instance = [instance_throughput(r.samples_ms, batch) for r in results]
    stats["throughput"] = sum(per_instance)
    stats["instances"] = len(results)
    first = results[0]
    effective = dict(first.effective)
    if len(results) > 1:
        effective["instances"] = [r.effective for r in results]
        effective["instance_throughput"] = per_instance
    timings = dict(first.timings)
    timings["slowest_worker_s"] = max(r.timings.get("worker_s", 0.0) for r in results)
    return S.TrialResult(
        status=S.OK,
        samples_ms=samples,
        stats=stats,
        accuracy=first.accuracy,
        effective=effective,
        timings=timings,
        artifact=first.artifact,
        stderr_tail="\n".join(r.stderr_tail for r in results if r.stderr_tail)[-4000:],
    )
