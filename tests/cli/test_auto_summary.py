"""The summary's speedup line: the two re-measured figures it prints divide to the
speedup it states, however unevenly the processes' call counts fall."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from tuner.cli.auto import _ratio, _remeasured
from tuner.search import finalists as F
from tuner.trial import spec as S
from tuner.trial.measure import summarize


def _process(median_ms: float, calls: int, rng: np.random.Generator) -> S.TrialResult:
    samples = list(median_ms * np.exp(rng.normal(0, 0.02, calls)))
    return S.TrialResult(status="ok", samples_ms=samples, stats=summarize(samples))


def test_the_printed_figures_divide_to_the_stated_speedup() -> None:
    rng = np.random.default_rng(0)
    # A noisy host: fast processes fit many more calls into their timed seconds than
    # slow ones, so pooling calls would weigh the fast ones several times over.
    default = F.Candidate(
        "default",
        {"n": 0},
        None,
        [_process(8.0, 400, rng), _process(9.0, 60, rng), _process(9.5, 60, rng), _process(9.2, 60, rng)],
    )
    winner = F.Candidate(
        "candidate",
        {"n": 1},
        None,
        [_process(3.0, 600, rng), _process(3.1, 600, rng), _process(4.0, 80, rng), _process(3.9, 80, rng)],
    )
    decision = F.decide("p50", default, [winner])
    assert decision.speedup is not None and decision.winner is winner
    outcome = SimpleNamespace(objective="p50")

    base, cand = _remeasured(default, outcome), _remeasured(winner, outcome)  # type: ignore[arg-type]
    assert base is not None and cand is not None
    assert base / cand == decision.speedup.point
    printed = re.fullmatch(r"p50 ([\d.]+) / ([\d.]+) ms", _ratio(default, winner, outcome))  # type: ignore[arg-type]
    assert printed, _ratio(default, winner, outcome)  # type: ignore[arg-type]
    # Printed to three decimals: they divide to the stated speedup within rounding.
    assert abs(float(printed[1]) / float(printed[2]) / decision.speedup.point - 1) < 1e-3
