"""CPU identity and ISA from /proc/cpuinfo: captured CPUs, the real machine, and
py-cpuinfo filling what /proc lacks."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest

from tuner.hardware.cpu import ARM_ISA, X86_ISA, parse_cpuinfo, py_cpuinfo_facts, read_cpu

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"

# fixture -> (vendor, model name, family, model, stepping, arch, ISA features present)
EXPECTED = {
    "sapphire_rapids": (
        "GenuineIntel", "Intel(R) Xeon(R) Platinum 8488C", 6, 143, 8, "x86_64",
        {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
         "amx_int8"},
    ),
    "cascade_lake_2s": (
        "GenuineIntel", "Intel(R) Xeon(R) Gold 5222 CPU @ 3.80GHz", 6, 85, 7, "x86_64",
        {"avx2", "avx512f", "avx512_vnni"},
    ),
    "zen4": (
        "AuthenticAMD", "AMD EPYC 9R14", 25, 17, 1, "x86_64",
        {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"},
    ),
    "graviton3": (
        "ARM", "Neoverse-V1", 8, 0xD40, 1, "aarch64",
        {"asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16"},
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_cpus(name: str) -> None:
    vendor, model_name, family, model, stepping, arch, present = EXPECTED[name]
    cpu = read_cpu(FIXTURES / name)
    assert (cpu.vendor, cpu.model_name, cpu.family, cpu.model, cpu.stepping, cpu.arch) == (
        vendor, model_name, family, model, stepping, arch,
    )
    names = ARM_ISA if arch == "aarch64" else X86_ISA
    assert set(cpu.isa) == set(names)  # every decisive key is answered, and only this arch's
    assert {k for k, v in cpu.isa.items() if v} == present


def test_graviton_has_no_x86_flags() -> None:
    cpu = read_cpu(FIXTURES / "graviton3")
    assert not any(flag.startswith(("avx", "amx", "sse")) for flag in cpu.flags)
    assert "svebf16" in cpu.flags and not cpu.has("avx512_bf16")


def _host_cpuinfo() -> str:
    return Path("/proc/cpuinfo").read_text()


def _first(text: str, key: str) -> str | None:
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() == key:
            return v.strip()
    return None


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux /proc")
def test_real_machine_matches_proc_cpuinfo() -> None:
    text = _host_cpuinfo()
    cpu = read_cpu(Path("/"))
    assert cpu.arch == platform.machine()
    flags = set((_first(text, "flags") or _first(text, "Features") or "").split())
    assert cpu.flags == flags
    for name, present in cpu.isa.items():
        assert present == (name in flags), name
    if cpu.arch == "x86_64":
        assert cpu.vendor == _first(text, "vendor_id")
        assert cpu.model_name == _first(text, "model name")
        assert cpu.family == int(_first(text, "cpu family") or -1)
        # What this machine reports decides the space; no feature is invented.
        if "amx_tile" not in flags:
            assert not (cpu.isa["amx_tile"] or cpu.isa["amx_bf16"] or cpu.isa["amx_int8"])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="compares x86 flag names")
def test_py_cpuinfo_fills_what_proc_lacks(tmp_path: Path) -> None:
    text = _host_cpuinfo()
    stripped = "\n".join(
        line for line in text.splitlines() if not line.startswith(("flags", "model name"))
    )
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(stripped + "\n")
    cpu = read_cpu(tmp_path, fallback=py_cpuinfo_facts)  # the real py-cpuinfo, run here
    host = read_cpu(Path("/"))
    assert cpu.model_name == host.model_name
    assert cpu.family == host.family and cpu.model == host.model
    # py-cpuinfo reads CPUID; for these features it and the kernel agree.
    for name in ("avx2", "avx512f", "avx512_vnni"):
        assert cpu.isa[name] == host.isa[name], name


def test_fallback_not_called_when_proc_is_complete() -> None:
    def fallback() -> dict[str, object]:
        raise AssertionError("py-cpuinfo must not run when /proc/cpuinfo has everything")

    assert read_cpu(FIXTURES / "zen4", fallback=fallback).model_name == "AMD EPYC 9R14"


def test_failing_fallback_keeps_proc_answer(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    shutil.copy(FIXTURES / "graviton3" / "proc" / "cpuinfo", tmp_path / "proc" / "cpuinfo")
    text = (tmp_path / "proc" / "cpuinfo").read_text().replace("CPU part\t: 0xd40", "CPU part\t: 0xfff")
    (tmp_path / "proc" / "cpuinfo").write_text(text)

    calls = []

    def fallback() -> dict[str, object]:
        calls.append(1)
        raise OSError("lscpu missing")

    cpu = read_cpu(tmp_path, fallback=fallback)
    assert calls == [1]  # an unknown part has no name in /proc: py-cpuinfo is asked
    assert cpu.model_name == "ARM part 0xfff"  # and when it fails, the part number names it
    assert cpu.isa["bf16"]


def test_unknown_text_gives_empty_isa() -> None:
    cpu = parse_cpuinfo("processor\t: 0\n", machine="riscv64")
    assert cpu.arch == "riscv64" and cpu.isa == {} and not cpu.flags
