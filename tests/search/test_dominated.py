"""The structured search does not start a process for a backend that cannot catch up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from tuner.search.study import SearchPolicy, TuneOptions
from tuner.trial import spec as S

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(backend: str, median: float, wall_s: float, status: str = S.OK) -> SimpleNamespace:
    return SimpleNamespace(config={"backend": backend}, median_ms=median, status=status,
                           started_at=T0, finished_at=T0 + timedelta(seconds=wall_s))


def tuner(**options) -> SearchPolicy:
    """The search policy of a study with these options (only the options matter to the rule)."""
    o = TuneOptions(model="m", seq_lens=[16], **options)
    return SearchPolicy(objective=o.objective, strategy=o.strategy, skip_dominated=o.skip_dominated)


MEASURED = {
    "a": row("openvino", 5.0, 3.0),
    "b": row("onnxruntime", 6.0, 3.0),
    "c": row("torch", 30.0, 10.0),  # 6x slower
    "d": row("torch_compile", 8.5, 50.0),  # 1.7x slower, a minute per trial
    "e": row("ipex", 5.5, 20.0, S.REJECTED),  # fast but below the guard: the best feasible stays 5.0
    "f": row("torchscript", 8.0, 4.0),  # 1.6x slower, cheap
}


def test_far_slower_and_slow_but_expensive_backends_are_skipped() -> None:
    t = tuner()
    why, median = t.dominated({"backend": "torch"}, MEASURED, warm_start_size=6)
    assert median == 30.0 and "6.0x the best median" in why and "skipped from 3x" in why
    why, _ = t.dominated({"backend": "torch_compile"}, MEASURED, warm_start_size=6)
    assert "1.7x" in why and "cost" in why
    for backend in ("openvino", "onnxruntime", "torchscript", "ipex"):
        assert t.dominated({"backend": backend}, MEASURED, warm_start_size=6) is None


def test_nothing_is_skipped_before_the_warm_start_ends_or_when_disabled() -> None:
    assert tuner().dominated({"backend": "torch"}, MEASURED, warm_start_size=7) is None
    assert tuner(skip_dominated=0).dominated({"backend": "torch"}, MEASURED, warm_start_size=6) is None
    assert tuner(strategy="tpe").dominated({"backend": "torch"}, MEASURED, warm_start_size=1) is None
    assert tuner(objective="throughput").dominated({"backend": "torch"}, MEASURED, warm_start_size=6) is None
