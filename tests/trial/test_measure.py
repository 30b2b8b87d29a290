import gc
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
    timed = []  # gc is off exactly while calls are timed (test_gc_is_off_only_while_timing)

    def call():
        calls.append(time.sleep(0.001))
        timed.append(not gc.isenabled())

    start = time.perf_counter()
    samples = time_calls(call, settings)
    elapsed = time.perf_counter() - start
    assert len(samples) >= 20
    assert sum(samples) / 1000 >= 0.05 * 0.9
    # Warm-up calls are not samples: each timed call is one sample, and the warm-up
    # made at least its minimum of calls before them.
    assert sum(timed) == len(samples)
    assert len(calls) - len(samples) >= settings.warmup_calls and not any(timed[: len(calls) - len(samples)])
    assert all(s >= 0.9 for s in samples)  # each call slept at least ~1 ms
    assert elapsed < 5.0


def test_time_calls_stops_at_max_calls():
    settings = MeasureSettings(warmup_calls=0, warmup_seconds=0.0, min_calls=10, min_seconds=60.0,
                               max_calls=50, max_seconds=60.0)
    assert len(time_calls(lambda: None, settings)) == 50


# --- the protocol: warm-up until settled, calibrated calls, short first measurement -----

from tuner.trial import measure as M  # noqa: E402


def _sleeper(durations_s):
    """A call whose n-th invocation sleeps durations_s(n) seconds."""
    count = [0]

    def call():
        time.sleep(durations_s(count[0]))
        count[0] += 1

    return call, count


def test_warm_up_goes_on_until_the_timings_settle():
    # Cold at first (7 ms), warming towards 1 ms: the window medians keep falling by
    # more than the tolerance for three windows, so warm-up must not stop before that.
    call, count = _sleeper(lambda n: 0.001 + 0.006 * 0.85**n)
    settings = MeasureSettings(warmup_calls=5, warmup_seconds=0.0, settle_window=10, settle_tolerance=0.2,
                               max_warmup_seconds=5.0)
    warm = M.warm_up(call, settings)
    assert warm.settled
    assert warm.calls >= 30 and count[0] == warm.calls
    assert warm.call_ms < 1.5  # the warm call time, not the cold one


def test_warm_up_that_never_settles_is_flagged():
    # Each call 15% slower than the one before: never steady.
    call, _ = _sleeper(lambda n: 0.0002 * 1.15**n)
    settings = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, settle_window=3, settle_tolerance=0.05,
                               max_warmup_seconds=0.3)
    warm = M.warm_up(call, settings)
    assert not warm.settled and warm.seconds >= 0.3
    stats = summarize([1.0] * 30)
    assert M.NOT_SETTLED in M.stability_flags(stats, settled=False)
    assert M.NOT_SETTLED not in M.stability_flags(stats, settled=True)


def test_calls_are_calibrated_from_the_settled_call_time():
    settings = MeasureSettings(min_calls=30, min_seconds=1.0, max_calls=5000)
    assert M.planned_calls(2.0, settings) == 500  # 1 s of 2 ms calls
    assert M.planned_calls(100.0, settings) == 30  # never fewer than min_calls
    assert M.planned_calls(0.01, settings) == 5000  # never more than max_calls
    call, _ = _sleeper(lambda n: 0.002)
    fast = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, min_calls=10, min_seconds=0.2, settle_tolerance=0.5)
    measured = M.measure(call, fast)
    assert abs(measured.planned_calls - 0.2 * 1000 / measured.warmup.call_ms) <= 1
    assert len(measured.samples_ms) >= measured.planned_calls
    assert not measured.stopped_early and measured.short_ms == []


def test_short_first_measurement_stops_a_clearly_slower_call():
    call, count = _sleeper(lambda n: 0.002)
    settings = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, min_calls=10, min_seconds=1.0,
                               settle_tolerance=0.5, short_calls=5, short_seconds=0.0, prune_above_ms=1.0)
    measured = M.measure(call, settings)
    assert measured.stopped_early
    assert len(measured.samples_ms) == 5 and measured.short_ms == measured.samples_ms
    # It did not go on for min_seconds: no call after the five short ones (counted, not
    # timed: the warm-up's length varies with the machine's load).
    assert count[0] == measured.warmup.calls + 5


def test_short_first_measurement_lets_a_fast_call_finish():
    call, _ = _sleeper(lambda n: 0.001)
    settings = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, min_calls=40, min_seconds=0.05,
                               settle_tolerance=0.5, short_calls=5, short_seconds=0.0, prune_above_ms=50.0)
    measured = M.measure(call, settings)
    assert not measured.stopped_early
    assert len(measured.samples_ms) >= 40 and measured.short_ms == measured.samples_ms[:5]


def test_gc_is_off_only_while_timing():
    import gc

    seen = []
    call = lambda: seen.append(gc.isenabled())  # noqa: E731
    settings = MeasureSettings(warmup_calls=3, warmup_seconds=0.0, min_calls=5, min_seconds=0.0, settle_window=3)
    warm_calls = M.measure(call, settings).warmup.calls
    assert all(seen[:warm_calls]) and not any(seen[warm_calls:])
    assert gc.isenabled()


def test_stability_flags():
    steady = summarize([1.0 + 0.001 * (i % 5) for i in range(100)])
    assert M.stability_flags(steady) == []
    # One slow call in a hundred is a latency tail, not an outlier problem...
    assert M.OUTLIERS not in M.stability_flags(summarize([1.0] * 99 + [5.0]))
    # ...five are.
    assert M.OUTLIERS in M.stability_flags(summarize([1.0] * 95 + [5.0] * 5))
    assert M.UNSTABLE in M.stability_flags(summarize([1.0, 2.0] * 20))
    assert M.FEW_SAMPLES in M.stability_flags(summarize([1.0] * 10))


def test_stability_warnings_word_the_stored_flags_too():
    unstable = summarize([1.0, 2.0] * 20)
    assert [w.split(":")[0] for w in stability_warnings(unstable)] == ["unstable"]
    assert stability_warnings(unstable)[0].endswith("% of the mean") and "34%" in stability_warnings(unstable)[0]
    # A stored trial's flags, "noisy" (set by the parent) included, are worded as given.
    assert stability_warnings(unstable, flags=["noisy"]) == ["noisy: other processes used its CPUs while it was timed"]
    assert stability_warnings({}, flags=["unstable", "few-samples", "not-settled"]) == [
        "unstable: stdev is 10% of the mean or more", "fewer than 20 samples", "the warm-up did not settle"]
    assert stability_warnings(summarize([1.0] * 30), flags=[]) == []
