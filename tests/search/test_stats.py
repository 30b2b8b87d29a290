"""The two-level bootstrap: calibrated on synthetic timings with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.search.stats import latency_speedup, rate_speedup, statistic


def _runs(rng: np.random.Generator, medians: list[float], calls: int = 300, spread: float = 0.05) -> list[list[float]]:
    """One list of per-call latencies per process, log-normal around each process's median."""
    return [list(m * np.exp(rng.normal(0.0, spread, calls))) for m in medians]


def test_a_real_twofold_speedup_is_significant_and_bracketed():
    rng = np.random.default_rng(1)
    base = _runs(rng, [10.0, 10.2, 9.9])
    cand = _runs(rng, [5.0, 5.1, 4.95])
    s = latency_speedup(base, cand)
    assert s.significant
    assert s.low < 2.0 < s.high and 1.9 < s.point < 2.1
    assert s.contains(s.point) and "95% CI" in s.describe()
    assert (s.baseline_runs, s.candidate_runs) == (3, 3)


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(2)
    base = _runs(rng, [10.0, 10.3, 9.8])
    cand = _runs(rng, [10.1, 9.9, 10.2])
    s = latency_speedup(base, cand)
    assert not s.significant and s.contains(1.0)


def test_between_process_spread_is_not_hidden_by_many_calls():
    """Thousands of calls per process cannot make a 2% difference significant when the
    processes themselves differ by 10%: pooled calls alone would call it significant."""
    rng = np.random.default_rng(3)
    base = _runs(rng, [10.0, 11.0, 9.0], calls=3000, spread=0.01)
    cand = _runs(rng, [9.8, 10.8, 8.8], calls=3000, spread=0.01)
    s = latency_speedup(base, cand)
    assert not s.significant, s
    # What a test on pooled calls would have claimed: a narrow interval around 1.02.
    pooled = np.concatenate(base), np.concatenate(cand)
    assert abs(np.median(pooled[0]) / np.median(pooled[1]) - 1.02) < 0.01


def test_the_interval_narrows_with_more_processes():
    rng = np.random.default_rng(4)
    medians_b = list(10.0 + rng.normal(0, 0.3, 12))
    medians_c = list(8.0 + rng.normal(0, 0.3, 12))
    few = latency_speedup(_runs(rng, medians_b[:3]), _runs(rng, medians_c[:3]))
    many = latency_speedup(_runs(rng, medians_b), _runs(rng, medians_c))
    assert many.high - many.low < few.high - few.low


def test_the_objective_picks_the_statistic():
    rng = np.random.default_rng(5)
    # A faster median, but 3% of the candidate's calls take three times longer: better p50, worse p99.
    base = [list(np.concatenate([np.full(970, 10.0), np.full(30, 20.0)]) + rng.normal(0, 0.01, 1000))
            for _ in range(3)]
    cand = [list(np.concatenate([np.full(970, 9.0), np.full(30, 60.0)]) + rng.normal(0, 0.01, 1000))
            for _ in range(3)]
    assert latency_speedup(base, cand, "p50").significant
    assert latency_speedup(base, cand, "p99").high < 1.0
    assert statistic("p90", np.arange(101.0)) == pytest.approx(90.0)
    with pytest.raises(ValueError):
        statistic("p95", np.arange(3.0))


def test_rate_speedup_of_one_figure_per_process():
    s = rate_speedup([100.0, 102.0, 98.0], [150.0, 149.0, 152.0])
    assert s.significant and s.point == pytest.approx(1.5, rel=0.01)
    with pytest.raises(ValueError):
        rate_speedup([], [1.0])


def test_a_side_without_measurements_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        latency_speedup([[1.0]], [[]])
