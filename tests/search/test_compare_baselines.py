"""benchmarks/compare_baselines.py: every ratio with its interval, more processes where
a ratio is not yet conclusive, "not separable" at the cap (fake processes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from tuner.trial import spec as S
from tuner.trial.measure import summarize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compare_baselines as CB  # noqa: E402

CONFIGS = [
    (CB.DEFAULT + "torch fp32", {"name": "default"}),
    ("ORT int8 per-channel", {"name": "hand-fast"}),  # as fast as the winner
    ("ORT int8 per-tensor", {"name": "hand-fails"}),  # faster, below the guard
    ("OpenVINO f32", {"name": "hand-slow"}),
    (CB.WINNER + "openvino int8", {"name": "winner"}),
]
TRUE_MS = {"default": 20.0, "hand-fast": 4.0, "hand-fails": 3.0, "hand-slow": 8.0, "winner": 4.0}


def fake(seed: int = 0) -> tuple[Any, list[str]]:
    rng = np.random.default_rng(seed)
    ran: list[str] = []

    def run_once(config: dict[str, Any], round_: int) -> S.TrialResult:
        ran.append(config["name"])
        median = TRUE_MS[config["name"]] * float(np.exp(rng.normal(0, 0.05)))
        samples = list(median * np.exp(rng.normal(0, 0.02, 100)))
        cosine = 0.95 if config["name"] == "hand-fails" else 0.995
        return S.TrialResult(status=S.OK, samples_ms=samples, stats=summarize(samples),
                             accuracy={"cosine_mean": cosine, "cosine_min": cosine})

    return run_once, ran


def passes(figures: dict[str, Any]) -> bool:
    return figures.get("cosine_min", 0) >= 0.98


def test_inconclusive_ratios_get_more_processes_up_to_the_cap(capsys: Any) -> None:
    run_once, ran = fake(1)
    entries = CB.measure(CONFIGS, 5, 8, run_once, passes, 16)
    runs = {e.candidate.config["name"]: len(e.candidate.runs) for e in entries}
    # The winner against the equally fast hand baseline stays open to the cap; the
    # default and the slow baseline are conclusive after 5; the failing one never reruns.
    assert runs == {"default": 5, "hand-fast": 8, "hand-fails": 5, "hand-slow": 5, "winner": 8}
    assert ran[:5] == ["default", "hand-fast", "hand-fails", "hand-slow", "winner"]
    by_name = {e.candidate.config["name"]: e for e in entries}
    assert CB.ratio(by_name["hand-fast"].winner_over).endswith("not separable)")
    assert 0.18 < 1 / by_name["default"].winner_over.point < 0.22 and "faster" in \
        CB.ratio(by_name["default"].winner_over)
    assert "slower" in CB.ratio(by_name["hand-fails"].winner_over)
    CB.print_table(16, entries, markdown=True)
    CB.print_conclusions(16, entries)
    out = capsys.readouterr().out
    assert "| processes |" in out and "| 8/8 |" in out
    assert "seq 16: winner / stock default = 0.19x" in out and "8 vs 5 fresh processes" in out
    assert "seq 16: winner / best hand baseline inside the guard (ORT int8 per-channel" in out
    assert "not separable)" in out.split("best hand baseline")[1]
    assert "significantly faster than the winner: none" in out


def test_a_hand_baseline_significantly_faster_than_the_winner_is_named(capsys: Any) -> None:
    run_once, _ = fake(2)
    slower_winner = [(name, {"name": "hand-slow"} if name.startswith(CB.WINNER) else c) for name, c in CONFIGS]
    entries = CB.measure(slower_winner, 5, 6, run_once, passes, 128)
    CB.print_conclusions(128, entries)
    out = capsys.readouterr().out
    assert "significantly faster than the winner: ORT int8 per-channel" in out
