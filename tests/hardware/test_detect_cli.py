"""``tuner detect``: registered through add_parser and run like the CLI runs it."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.cli import detect as detect_cli
from tuner.hardware import GpuInfo, detect

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tuner")
    detect_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["detect", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    machine = detect()
    assert data["fingerprint"] == machine.fingerprint
    assert data["cpu"]["isa"] == machine.cpu.isa
    assert data["topology"]["cores"] == machine.topology.cores


def test_text(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["detect"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    machine = detect()
    assert machine.cpu.model_name in out
    for name, present in machine.cpu.isa.items():
        assert f"{name} {'yes' if present else 'no'}" in out
    assert (machine.gpu_note or machine.gpus[0].name) in out
    assert machine.fingerprint in out


def test_text_of_a_numa_machine() -> None:
    text = detect_cli.format_machine(detect(str(FIXTURES / "cascade_lake_2s")))
    assert "2 sockets, 8 cores, 2 threads per core; 16 logical CPUs" in text
    assert "node 0: CPUs 0-3,8-11" in text and "node 1: CPUs 4-7,12-15" in text
    assert "avx512_vnni yes" in text and "amx_bf16 no" in text
    assert "187.4 GiB" in text


def test_text_of_arm_and_gpu() -> None:
    machine = detect(str(FIXTURES / "graviton3"))
    gpu = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_mib=81559, driver="550.54.15",
                  compute_capability="9.0")
    text = detect_cli.format_machine(replace(machine, gpus=[gpu], gpu_note=None))
    assert "ARM Neoverse-V1 (architecture 8, part 0xd40, revision 1), aarch64" in text
    assert "bf16 yes" in text and "sve2 no" in text and "avx" not in text
    assert "0: NVIDIA H100 80GB HBM3, 81559 MiB, driver 550.54.15, compute 9.0" in text
