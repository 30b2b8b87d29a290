import time

from tuner.trial.measure import percentile, stability_warnings, summarize, time_calls
from tuner.trial.spec import MeasureSettings


def test_percentile_interpolates():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5


def test_summarize_statistics():
    stats = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["n"] == 5
    assert stats["median"] == 3.0
    assert stats["min"] == 1.0 and stats["max"] == 100.0
    assert abs(stats["mean"] - 22.0) < 1e-9
    assert stats["cv"] > 1.0
    assert any("outliers" in w for w in stability_warnings(stats))
    assert any("unstable" in w for w in stability_warnings(stats))


def test_time_calls_respects_minimum_calls_and_seconds():
    calls = []
    settings = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, min_calls=20, min_seconds=0.05,
                               max_calls=10_000, max_seconds=5.0)
    start = time.perf_counter()
    samples = time_calls(lambda: calls.append(time.sleep(0.001)), settings)
    elapsed = time.perf_counter() - start
    assert len(samples) >= 20
    assert sum(samples) / 1000 >= 0.05 * 0.9
    assert len(calls) == len(samples) + 3 or len(calls) > len(samples)  # warm-up calls are not samples
    assert all(s >= 0.9 for s in samples)  # each call slept at least ~1 ms
    assert elapsed < 5.0


def test_time_calls_stops_at_max_calls():
    settings = MeasureSettings(warmup_calls=0, warmup_seconds=0.0, min_calls=10, min_seconds=60.0,
                               max_calls=50, max_seconds=60.0)
    assert len(time_calls(lambda: None, settings)) == 50
