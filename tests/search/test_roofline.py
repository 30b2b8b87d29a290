"""benchmarks/roofline.py places each stored winner against the kernel rate of its
precision (the GEMM timing itself is a benchmark, not tested here)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import roofline  # noqa: E402

RATES = {
    "square 1024": {"torch fp32": 150.0, "onnxruntime fp32": 140.0, "onnxruntime int8": 300.0, "openvino f32": 130.0},
    "FFN at seq 16": {"torch fp32": 80.0, "onnxruntime fp32": 100.0, "onnxruntime int8": 200.0, "openvino f32": 50.0},
}


def _winner(precision: str, **metrics: float) -> SimpleNamespace:
    return SimpleNamespace(config={"backend": "onnxruntime", "precision": precision}, metrics=metrics)


def test_a_winner_is_placed_by_its_re_measured_median_against_its_precision() -> None:
    # 2 GFLOP in 20 ms (re-measured; the search said 10 ms) = 100 GFLOP/s of int8's 200 and 300.
    winners = {16: _winner("int8", median_ms=10.0, remeasured_median_ms=20.0)}
    rows = roofline.winner_rows(winners, [16, 128], RATES, lambda seq_len: 2e9)
    assert rows == [["16", "onnxruntime int8", "2.00", "20.000", "100", "50%", "33%"]]


def test_an_fp32_winner_counts_openvino_f32_and_falls_back_to_the_search_median() -> None:
    winners = {16: _winner("fp32", median_ms=20.0)}
    rows = roofline.winner_rows(winners, [16], RATES, lambda seq_len: 2e9)
    assert rows == [["16", "onnxruntime fp32", "2.00", "20.000", "100", "100%", "67%"]]


def test_a_winner_without_a_median_is_left_out(capsys) -> None:  # type: ignore[no-untyped-def]
    assert roofline.winner_rows({16: _winner("int8")}, [16], RATES, lambda seq_len: 2e9) == []
    assert "no median" in capsys.readouterr().err
