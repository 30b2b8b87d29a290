"""Speed clusters and drift of per-process medians (tuner.search.clusters), calibrated
on synthetic processes with known truth and on the AMX Xeon's medians of issue 17."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.search.clusters import find_clusters, find_drift, host_clustered, noise_lines, processes_notes

# `tuner verify` on the AMX Xeon VM (issue 17): the seq-16 winner's and the seq-128
# winner's per-process medians, ms.
AMX_SEQ16 = [1.48, 2.41, 1.54, 2.51, 1.50]
AMX_SEQ128 = [4.3, 8.2, 5.0, 8.3, 4.6]


def test_the_amx_hosts_processes_fall_into_two_clusters():
    found = find_clusters(AMX_SEQ16)
    assert found.clustered and found.sizes == (3, 2)
    assert found.groups == ((1.48, 1.50, 1.54), (2.41, 2.51))
    assert found.apart == pytest.approx(2.46 / 1.50)
    assert found.describe() == "2 speed clusters: 3 at 1.48-1.54 ms, 2 at 2.41-2.51 ms (1.64x apart)"
    wide = find_clusters(AMX_SEQ128)  # 4.3-5.0 ms is wider, the gap wider still
    assert wide.clustered and wide.sizes == (3, 2)
    assert wide.to_dict()["sizes"] == [3, 2] and wide.to_dict()["clustered"] is True


@pytest.mark.parametrize("medians", [
    [1.48, 1.50, 1.54, 1.51, 1.49],  # one cluster
    [1.0, 1.0, 1.0, 1.7],  # a single slow process is an outlier, not a cluster
    [1.0, 1.01, 1.07, 1.08],  # 6% apart: too close to matter
    [1.0, 1.7, 1.01],  # too few processes to tell
    [],
])
def test_what_is_not_two_clusters(medians):
    found = find_clusters(medians)
    assert not found.clustered and found.sizes == (len(medians),)


def test_an_outlier_cannot_split_off_alone_it_widens_a_cluster():
    # The largest gap (1.71 -> 3.0) would leave one process alone: the split is taken
    # at 1.02 -> 1.7 instead, and the outlier's spread is counted against it.
    found = find_clusters([1.0, 1.01, 1.02, 1.7, 1.71, 3.0])
    assert found.gap == pytest.approx(1.7 / 1.02) and not found.clustered
    assert find_clusters([1.0, 1.01, 1.02, 1.7, 1.71, 1.75]).sizes == (3, 3)


def test_one_noisy_cluster_is_rarely_called_two_and_two_real_ones_are_found():
    """Simulated: between-process sd 0.12 of log latency (the Skylake VM's spread) with
    5 and 8 processes; two clusters 1.7x apart (sd 0.03) whenever each has 2 processes."""
    rng = np.random.default_rng(0)
    for n, most in ((5, 0.08), (8, 0.03)):
        false = np.mean([find_clusters(np.exp(rng.normal(0, 0.12, n))).clustered for _ in range(1000)])
        assert false <= most, (n, false)
    for fast in (2, 3, 4):
        found = [find_clusters(np.exp(np.concatenate([rng.normal(0, 0.03, fast), rng.normal(np.log(1.7), 0.03, 6 - fast)])))
                 for _ in range(200)]
        assert np.mean([f.clustered and f.sizes == (fast, 6 - fast) for f in found]) >= 0.97


def test_drift_is_a_trend_in_run_order_not_clusters():
    slowing = find_drift([1.00, 1.02, 1.03, 1.06, 1.08, 1.11, 1.12, 1.15])
    assert slowing.drifting and slowing.rho == pytest.approx(1.0) and 1.12 < slowing.change < 1.2
    assert "slower over 8 processes" in slowing.describe()
    assert find_drift([1.2, 1.15, 1.1, 1.05, 1.0]).drifting  # faster counts too: 5 in order, p = 1/60
    # Clusters drawn at random are not a trend.
    assert not find_drift(AMX_SEQ16).drifting
    # A trend too small to matter, or too few processes to test.
    assert not find_drift([1.0, 1.005, 1.01, 1.015, 1.02, 1.025]).drifting
    assert not find_drift([1.0, 1.2, 1.4, 1.6]).drifting and find_drift([1.0]).runs == 1


def test_drift_of_many_processes_uses_sampled_orders():
    rng = np.random.default_rng(1)
    steady = find_drift(list(np.exp(rng.normal(0, 0.05, 12))))
    assert not steady.drifting and 0.0 <= steady.p <= 1.0
    assert find_drift(list(np.exp(np.linspace(0, 0.2, 12) + rng.normal(0, 0.01, 12)))).drifting


def test_the_words_name_who_clustered_and_how():
    named = [("trial 16", AMX_SEQ16), ("the stock default", [8.1, 8.2, 8.15, 8.3, 8.2])]
    host = host_clustered(named)
    assert host is not None and "speed clusters" in host and "trial 16 3+2 (1.64x)" in host
    assert "the stock default" not in host
    assert noise_lines(named) == ["trial 16: 2 speed clusters: 3 at 1.48-1.54 ms, 2 at 2.41-2.51 ms (1.64x apart)"]
    assert processes_notes(named)[0] == host
    assert host_clustered([("x", [1.0, 1.01, 1.0, 1.02])]) is None and processes_notes([("x", [1.0])]) == []
