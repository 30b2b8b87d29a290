"""How often does the speedup's 95% interval contain the true speedup, per number of
fresh processes on each side?

    python benchmarks/ci_coverage.py --processes 3,5 --sims 400

Simulates the measurements a study's finalists and `tuner verify` take: k fresh
processes per side, each with its own offset (log-normal, ``--between`` sd: the
spread between processes and half-hours on a shared VM; the grids of
benchmarks/search_efficiency.py measured 0.11-0.14 on this 2-vCPU VM) and its calls
around it (``--within`` sd), a true speedup of 6x; then computes the interval the way
the tuner does (tuner.search.stats.latency_speedup, the two-level bootstrap) and
counts how often it contains 6x. A 95% interval should do so about 95% of the time.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from tuner.search.stats import latency_speedup

TRUE_SPEEDUP = 6.0


def coverage(k: int, sims: int, between: float, within: float, calls: int, seed: int) -> tuple[float, float]:
    """(share of intervals containing the true speedup, median high/low width)."""
    rng = np.random.default_rng(seed)

    def processes(median_ms: float) -> list[np.ndarray]:
        return [median_ms * np.exp(rng.normal(0.0, between) + rng.normal(0.0, within, size=calls)) for _ in range(k)]

    hits, widths = 0, []
    for sim in range(sims):
        speedup = latency_speedup(processes(30.0), processes(30.0 / TRUE_SPEEDUP), seed=sim)
        hits += speedup.contains(TRUE_SPEEDUP)
        widths.append(speedup.high / speedup.low)
    return hits / sims, statistics.median(widths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="3,4,5,7", help="k values, comma-separated (default 3,4,5,7)")
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--between", type=float, default=0.12, help="sd of log process offsets (default 0.12)")
    parser.add_argument("--within", type=float, default=0.05, help="sd of log call times in a process (default 0.05)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per process (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"between-process sd {args.between}, within {args.within}, {args.calls} calls, {args.sims} simulations")
    print("| processes per side | coverage of the 95% interval | median width (high / low) |")
    print("|---|---|---|")
    for k in [int(v) for v in args.processes.split(",")]:
        share, width = coverage(k, args.sims, args.between, args.within, args.calls, args.seed + k)
        print(f"| {k} | {share:.0%} | {width:.2f} |")


if __name__ == "__main__":
    main()
