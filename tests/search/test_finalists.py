"""Finalists: which trials, in what order they re-run, and which one wins."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tuner.search import finalists as F
from tuner.trial import spec as S
from tuner.trial.measure import summarize


@dataclass
class Row:  # the fields of a TrialRecord that finalists read
    number: int
    config: dict
    status: str = "ok"
    value: float | None = None
    id: int = 0
    extra: dict = field(default_factory=dict)


DEFAULT = {"backend": "torch", "precision": "fp32"}


def test_pick_takes_the_best_distinct_feasible_configurations_without_the_default():
    rows = [
        Row(0, DEFAULT, value=10.0),
        Row(1, {"backend": "ort", "precision": "int8"}, value=2.0),
        Row(2, {"backend": "ort", "precision": "int8"}, status="duplicate", value=2.0),
        Row(3, {"backend": "ort", "precision": "fp32"}, value=3.0),
        Row(4, {"backend": "ort", "precision": "int4"}, status="rejected", value=1.0),  # below the guard
        Row(5, {"backend": "torch", "precision": "int8"}, value=5.0),
        Row(6, {"backend": "ort", "precision": "int8"}, value=2.5),  # same config as 1, worse figure
        Row(7, {"backend": "ov", "precision": "f32"}, status="pruned"),
    ]
    assert [r.number for r in F.pick(rows, "p50", 2, DEFAULT)] == [1, 3]
    assert [r.number for r in F.pick(rows, "p50", 10, DEFAULT)] == [1, 3, 5]
    # Throughput is maximised: the largest values first.
    assert [r.number for r in F.pick(rows, "throughput", 1, DEFAULT)] == [5]


def test_remeasure_interleaves_with_rotating_order_and_resumes():
    order = []
    candidates = [F.Candidate("default", DEFAULT), F.Candidate("candidate", {"a": 1}), F.Candidate("candidate", {"b": 2})]

    def run(c: F.Candidate, round_: int) -> S.TrialResult:
        order.append((round_, next(iter(c.config))))
        return S.TrialResult(status="ok")

    F.remeasure(candidates, 3, run)
    assert order == [(0, "backend"), (0, "a"), (0, "b"),
                     (1, "a"), (1, "b"), (1, "backend"),
                     (2, "b"), (2, "backend"), (2, "a")]
    # A re-run with runs already stored (an interrupted run resumed) only adds what is missing.
    order.clear()
    candidates[2].runs.pop()
    F.remeasure(candidates, 3, run)
    assert order == [(2, "b")]


def _result(median: float, rng: np.random.Generator, spread: float = 0.03) -> S.TrialResult:
    samples = list(median * np.exp(rng.normal(0, spread, 200)))
    return S.TrialResult(status="ok", samples_ms=samples, stats=summarize(samples))


def _candidate(role: str, medians: list[float], rng: np.random.Generator, number: int = 0) -> F.Candidate:
    return F.Candidate(role, {"n": number}, Row(number, {"n": number}), [_result(m, rng) for m in medians])


def test_the_winner_is_the_best_significant_finalist():
    rng = np.random.default_rng(0)
    default = _candidate("default", [10.0, 10.1, 9.9], rng)
    slightly = _candidate("candidate", [9.95, 10.05, 9.9], rng, 1)  # within noise
    fast = _candidate("candidate", [5.0, 5.1, 4.9], rng, 2)
    faster = _candidate("candidate", [4.0, 4.1, 3.9], rng, 3)
    decision = F.decide("p50", default, [slightly, fast, faster])
    assert decision.winner is faster and decision.speedup is not None and decision.speedup.significant
    assert 2.3 < decision.speedup.point < 2.7
    verdicts = {v.candidate.trial.number: v for v in decision.verdicts}
    assert not verdicts[1].speedup.significant and verdicts[2].speedup.significant
    assert verdicts[3].to_dict()["significant"] is True and len(verdicts[3].to_dict()["medians_ms"]) == 3


def test_the_default_stays_when_no_finalist_is_significantly_better():
    rng = np.random.default_rng(1)
    default = _candidate("default", [10.0, 10.5, 9.5], rng)
    close = _candidate("candidate", [9.8, 10.4, 9.4], rng, 1)
    decision = F.decide("p50", default, [close])
    assert decision.winner is default and decision.speedup is None
    assert "stock default stays" in decision.summary


def test_failed_runs_leave_a_finalist_out():
    rng = np.random.default_rng(2)
    default = _candidate("default", [10.0, 10.0, 10.0], rng)
    flaky = _candidate("candidate", [5.0], rng, 1)
    flaky.runs += [S.TrialResult(status="crashed", reason="killed by SIGKILL")] * 2
    decision = F.decide("p50", default, [flaky])
    assert decision.winner is default
    assert "only 1 of 3" in decision.verdicts[0].note


def test_without_a_default_the_best_remeasured_finalist_wins_without_a_claim():
    rng = np.random.default_rng(3)
    default = F.Candidate("default", DEFAULT, None, [S.TrialResult(status="error", reason="no torch")] * 3)
    a = _candidate("candidate", [5.0, 5.0, 5.0], rng, 1)
    b = _candidate("candidate", [4.0, 4.0, 4.0], rng, 2)
    decision = F.decide("p50", default, [a, b])
    assert decision.winner is b and decision.speedup is None
    assert "no speedup is stated" in decision.summary


def test_throughput_compares_one_figure_per_process():
    rng = np.random.default_rng(4)
    default = _candidate("default", [10.0, 10.0, 10.0], rng)  # one instance: 100 inf/s
    multi = _candidate("candidate", [12.0, 12.0, 12.0], rng, 1)
    for run in multi.runs:
        run.stats["throughput"] = 160.0  # two instances of 12 ms each
    speedup = F.compare("throughput", default, multi, batch=1)
    assert speedup.significant and abs(speedup.point - 1.6) < 0.05


def test_pick_adds_the_best_of_each_close_family_at_most_k_more():
    ort = [Row(i, {"backend": "ort", "precision": "int8", "threads": i}, value=2.0 + i / 100) for i in range(1, 6)]
    rows = [Row(0, DEFAULT, value=10.0), *ort,
            Row(10, {"backend": "ov", "precision": "bf16"}, value=2.6),  # 1.3x the best: close enough
            Row(11, {"backend": "ov", "precision": "bf16", "threads": 1}, value=2.7),  # same family, worse
            Row(12, {"backend": "ort", "precision": "fp32"}, value=2.9),
            Row(13, {"backend": "torch", "precision": "bf16"}, value=3.5)]  # 1.7x: too far to catch up
    assert [r.number for r in F.pick(rows, "p50", 3, DEFAULT)] == [1, 2, 3, 10, 12]
    assert [r.number for r in F.pick(rows, "p50", 1, DEFAULT)] == [1, 10]  # at most k more
    assert [r.number for r in F.pick(rows, "p50", 3, DEFAULT, family_margin=0)] == [1, 2, 3]
    # Throughput: within 1/1.5 of the highest rate.
    rates = [Row(1, {"backend": "ort", "precision": "int8"}, value=300.0),
             Row(2, {"backend": "ort", "precision": "int8", "threads": 1}, value=290.0),
             Row(3, {"backend": "ov", "precision": "int8"}, value=210.0),
             Row(4, {"backend": "torch", "precision": "fp32", "threads": 1}, value=150.0)]
    assert [r.number for r in F.pick(rates, "throughput", 1, DEFAULT)] == [1, 3]
