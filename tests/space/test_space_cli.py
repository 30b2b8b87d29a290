"""``tuner space``: registered through add_parser and run like the CLI runs it."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from tuner.cli import space as space_cli
from tuner.hardware import detect
from tuner.space import load_space

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tuner")
    space_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_text(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["space", "--model", "sentence-transformers/all-MiniLM-L6-v2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    space = load_space(detect())
    assert f"size: {space.size()} configurations" in out
    for backend in space.backends:
        assert f"\n{backend}" in f"\n{out}"
    for pruned in space.pruned:
        assert pruned.reason in out
    assert ("pruned:" in out) == bool(space.pruned)


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["space", "--model", "m", "--json", "--backends", "torch"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    space = load_space(detect(), backends=["torch"])
    assert data["model"] == "m"
    assert data["backends"] == ["torch"]
    assert data["size"] == space.size()
    assert data["content_hash"] == space.content_hash()
    assert data["default"] == space.default_config()


def test_model_is_required() -> None:
    with pytest.raises(SystemExit):
        _parse(["space"])


def test_text_of_a_captured_machine() -> None:
    text = space_cli.format_space(load_space(detect(str(FIXTURES / "cascade_lake_2s"))))
    assert text.startswith("torch  (stock default: precision=fp32, threads=8, binding=none, allocator=system, "
                           "openmp=gnu, omp_proc_bind=unset, omp_places=unset, omp_wait_policy=unset)")
    assert re.search(r"^  quant_granularity +per_tensor, per_channel +when precision = int8$", text, re.M)
    assert "  torch precision=bf16: no avx512_bf16 or amx_bf16 on this CPU" in text
