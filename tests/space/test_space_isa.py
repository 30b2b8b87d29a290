"""The choices that need more of the CPU (issue 17: bf16/f16 remainders of OpenVINO
int8, ONNX Runtime's int8 kernels, the torch family's bf16) kept where the captured
CPUs have the instructions and pruned, with the reason, where they do not. Nothing
here depends on the CPU running the tests, except the check of this machine, which
reads its flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.hardware import MachineInfo, detect
from tuner.space import Pruned, Space, load_space

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
BF16 = "no avx512_bf16 or amx_bf16 on this CPU"
F16 = "no avx512_fp16 on this CPU"
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")  # ONNX Runtime's U8S8 kernels without saturation


def machine(name: str) -> MachineInfo:
    return detect(str(FIXTURES / name))


def choices(space: Space, backend: str, name: str) -> tuple[object, ...]:
    return next(d.values() for d in space.dimensions(backend) if d.name == name)


def reasons(space: Space, backend: str, name: str) -> dict[object, str]:
    return {p.choice: p.reason for p in space.pruned if p.backend == backend and p.dimension == name}


def without_flags(tmp_path: Path, name: str, flags: tuple[str, ...]) -> MachineInfo:
    """A captured CPU with some flags taken out of its /proc/cpuinfo (a Skylake-SP is a
    Cascade Lake without VNNI)."""
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    cpuinfo = root / "proc" / "cpuinfo"
    lines = []
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            head, _, listed = line.partition(":")
            line = f"{head}: {' '.join(f for f in listed.split() if f not in flags)}"
        lines.append(line)
    cpuinfo.write_text("\n".join(lines) + "\n")
    return detect(str(root))


# --- OpenVINO: what NNCF left in floating point, and static shapes -----------------------


@pytest.mark.parametrize(
    "name, kept, pruned",
    [
        ("sapphire_rapids", ("f32", "bf16", "f16"), {}),
        ("zen4", ("f32", "bf16"), {"f16": F16}),
        ("cascade_lake_2s", ("f32",), {"bf16": BF16, "f16": F16}),
        ("graviton3", ("f32", "f16"), {"bf16": "no avx512_bf16 or amx_bf16 on this aarch64 CPU"}),
    ],
)
def test_openvino_int8_remainder(name: str, kept: tuple[str, ...], pruned: dict[str, str]) -> None:
    space = load_space(machine(name), backends=["openvino"])
    assert choices(space, "openvino", "int8_remainder") == kept
    assert reasons(space, "openvino", "int8_remainder") == pruned
    assert choices(space, "openvino", "shapes") == ("dynamic", "static")  # any CPU


def test_openvino_remainder_is_an_int8_knob() -> None:
    space = load_space(machine("sapphire_rapids"), backends=["openvino"])
    seen = {(c["precision"], c.get("int8_remainder")) for c in space.configs()}
    assert seen == {("fp32", None), ("bf16", None), ("int8", "f32"), ("int8", "bf16"), ("int8", "f16")}
    assert space.default_config()["shapes"] == "dynamic"


# --- ONNX Runtime: the int8 kernels -------------------------------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [("sapphire_rapids", "not for a CPU with avx512_vnni, avx_vnni and amx_int8"),
     ("cascade_lake_2s", "not for a CPU with avx512_vnni"),
     ("zen4", "not for a CPU with avx512_vnni")],
)
def test_onnxruntime_with_vnni_or_amx_keeps_the_exact_u8s8_only(name: str, reason: str) -> None:
    space = load_space(machine(name), backends=["onnxruntime"])
    assert choices(space, "onnxruntime", "int8_kernel") == ("u8s8",)
    assert reasons(space, "onnxruntime", "int8_kernel") == {"u8u8": reason}


def test_onnxruntime_without_vnni_keeps_u8u8(tmp_path: Path) -> None:
    skylake = without_flags(tmp_path, "cascade_lake_2s", ("avx512_vnni",))
    assert not any(skylake.cpu.has(flag) for flag in VNNI)
    space = load_space(skylake, backends=["onnxruntime"])
    assert choices(space, "onnxruntime", "int8_kernel") == ("u8s8", "u8u8")
    assert not [p for p in space.pruned if p.backend == "onnxruntime"]
    # The knob is there only where it changes something: int8, at a level at which ORT
    # runs the transformer that rewrites the weights.
    free = ("precision", "quantization", "graph", "reduce_range", "graph_opt_level", "int8_kernel")
    for config in space.restricted(free).configs():
        active = config["precision"] == "int8" and config["graph_opt_level"] in ("all", "extended")
        assert ("int8_kernel" in config) == active, config


def test_onnxruntime_u8u8_is_x86_only() -> None:
    space = load_space(machine("graviton3"), backends=["onnxruntime"])
    assert reasons(space, "onnxruntime", "int8_kernel") == {"u8u8": "no avx2 on this aarch64 CPU"}


# --- the torch family's bf16 --------------------------------------------------------------


@pytest.mark.parametrize("name, native", [("sapphire_rapids", True), ("zen4", True), ("cascade_lake_2s", False)])
def test_torch_compile_and_ipex_bf16(name: str, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # IPEX runs in its own environment; the choice is decided the same way once it exists.
    monkeypatch.setattr("tuner.space.loader.env_unavailable_reason", lambda env: None)
    space = load_space(machine(name), backends=["torch_compile", "ipex"])
    for backend in ("torch_compile", "ipex"):
        assert ("bf16" in choices(space, backend, "precision")) is native, backend
        assert reasons(space, backend, "precision") == ({} if native else {"bf16": BF16}), backend


# --- this machine, whatever it is ----------------------------------------------------------


def test_this_machine() -> None:
    host = detect()
    space = load_space(host, backends=["openvino", "onnxruntime", "torch_compile"])
    x86 = host.cpu.arch == "x86_64"
    bf16 = host.cpu.has("avx512_bf16") or host.cpu.has("amx_bf16")
    f16 = host.cpu.has("avx512_fp16") or host.cpu.has("asimdhp")
    if "openvino" in space.backends and "int8" in choices(space, "openvino", "precision"):
        assert choices(space, "openvino", "int8_remainder") == ("f32", *(["bf16"] if bf16 else []),
                                                                *(["f16"] if f16 else []))
        if x86 and not bf16:
            assert Pruned("int8_remainder", "bf16", "openvino", BF16) in space.pruned
        if x86 and not f16:
            assert Pruned("int8_remainder", "f16", "openvino", F16) in space.pruned
    if "onnxruntime" in space.backends:
        exact = any(host.cpu.has(flag) for flag in VNNI)
        assert ("u8u8" in choices(space, "onnxruntime", "int8_kernel")) == (host.cpu.has("avx2") and not exact)
    if "torch_compile" in space.backends:
        native = bf16 or host.cpu.has("bf16")
        assert ("bf16" in choices(space, "torch_compile", "precision")) == native


def test_tuner_space_on_a_captured_machine() -> None:
    """What a subprocess sees through $TUNER_HW_ROOT: the Sapphire Rapids keeps what this
    machine may prune."""
    env = {**os.environ, "TUNER_HW_ROOT": str(FIXTURES / "sapphire_rapids")}
    out = subprocess.run([sys.executable, "-m", "tuner", "space", "--model", "m", "--json",
                          "--backends", "openvino,torch_compile"],
                         env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    data = json.loads(out)
    assert not [p for p in data["pruned"] if p["choice"] in ("bf16", "f16")]
    text = json.dumps(data["dimensions"])
    assert '"bf16"' in text and '"f16"' in text
