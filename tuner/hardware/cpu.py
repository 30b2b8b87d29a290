"""What the CPU is and which instructions it has.

``/proc/cpuinfo`` is the source of truth: the kernel lists only the features it lets
user space use (AMX, for instance, appears only when the kernel supports its state).
py-cpuinfo fills what /proc lacks on the *running* machine (an ARM kernel prints no
model name); it is never used for a fixture root, where it would describe the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# The features that decide which kernels a framework can pick. The space names only
# these in its ISA requirements, so a typo in a space file is caught at load time.
X86_ISA: tuple[str, ...] = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# Linux's aarch64 HWCAP names: asimd is NEON, asimddp the int8 dot product, asimdhp
# fp16 arithmetic.
ARM_ISA: tuple[str, ...] = ("asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16")
KNOWN_ISA: frozenset[str] = frozenset(X86_ISA + ARM_ISA)

# Flags whose names differ between py-cpuinfo (CPUID bit names) and the kernel.
_PY_CPUINFO_NAMES = {
    "avx512vnni": "avx512_vnni",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx5124vnniw": "avx512_4vnniw",
    "avx5124fmaps": "avx512_4fmaps",
}

# aarch64 implementer codes and part numbers (MIDR_EL1), as lscpu names them.
_ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}
_ARM_PARTS = {
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD84): "Neoverse-V3",
    (0x41, 0xD8E): "Neoverse-N3",
    (0xC0, 0xAC3): "Ampere-1",
    (0xC0, 0xAC4): "Ampere-1a",
}


@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    model_name: str
    # x86: CPUID family/model/stepping. aarch64: architecture (8), part number,
    # revision, i.e. what lscpu shows.
    family: int | None
    model: int | None
    stepping: int | None
    arch: str  # "x86_64", "aarch64", or what platform.machine() says
    flags: frozenset[str] = field(default_factory=frozenset)
    isa: dict[str, bool] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return self.isa.get(feature, False) or feature in self.flags


def isa_names_for(arch: str) -> tuple[str, ...]:
    """The decisive ISA keys reported for an architecture (empty if unknown)."""
    if arch in ("x86_64", "amd64", "i686", "i386"):
        return X86_ISA
    if arch in ("aarch64", "arm64"):
        return ARM_ISA
    return ()


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)  # aarch64 fields are hex ("0x41")
    except ValueError:
        return None


def _first_fields(text: str) -> dict[str, str]:
    """The first value of each ``key : value`` field in the file.

    Every processor block repeats the same identity fields; on big.LITTLE ARM they
    could differ, and the first CPU is what the kernel boots on, so it wins.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cpuinfo(text: str, machine: str | None = None) -> CpuInfo:
    """Parse /proc/cpuinfo text. ``machine`` is the architecture to assume when the
    text does not reveal it (platform.machine() for the running machine)."""
    f = _first_fields(text)
    if "flags" in f or "vendor_id" in f:
        arch = machine if machine in ("x86_64", "i686", "i386") else "x86_64"
        flags = frozenset(f.get("flags", "").split())
        vendor = f.get("vendor_id", "")
        model_name = f.get("model name", "")
        family, model, stepping = _int(f.get("cpu family")), _int(f.get("model")), _int(f.get("stepping"))
    elif "Features" in f or "CPU implementer" in f:
        arch = "aarch64"
        flags = frozenset(f.get("Features", "").split())
        implementer = _int(f.get("CPU implementer"))
        part = _int(f.get("CPU part"))
        vendor = _ARM_IMPLEMENTERS.get(implementer, f.get("CPU implementer", "")) if implementer is not None else ""
        # Some kernels (and Apple-on-Linux) do print a model name; prefer it. An
        # unknown part stays unnamed here so that py-cpuinfo may name it.
        model_name = f.get("model name") or _ARM_PARTS.get((implementer or -1, part or -1), "")
        family, model, stepping = _int(f.get("CPU architecture")), part, _int(f.get("CPU revision"))
    else:
        arch = machine or "unknown"
        flags = frozenset()
        vendor, model_name = "", f.get("model name", "")
        family = model = stepping = None
    isa = {name: name in flags for name in isa_names_for(arch)}
    return CpuInfo(vendor, model_name, family, model, stepping, arch, flags, isa)


def py_cpuinfo_facts() -> dict[str, Any]:
    """py-cpuinfo's view of the running CPU (slow: it starts a subprocess)."""
    import cpuinfo  # lazy: it probes CPUID in a child process

    return dict(cpuinfo.get_cpu_info())


def merge_fallback(cpu: CpuInfo, facts: Mapping[str, Any]) -> CpuInfo:
    """Fill what /proc left empty from py-cpuinfo's ``facts``; /proc wins otherwise."""
    flags = cpu.flags
    if not flags and facts.get("flags"):
        flags = frozenset(_PY_CPUINFO_NAMES.get(name, name) for name in facts["flags"])
    arch = cpu.arch
    if arch == "unknown" and facts.get("arch_string_raw"):
        arch = str(facts["arch_string_raw"])
    names = isa_names_for(arch)
    return CpuInfo(
        vendor=cpu.vendor or str(facts.get("vendor_id_raw") or ""),
        model_name=cpu.model_name or str(facts.get("brand_raw") or ""),
        family=cpu.family if cpu.family is not None else facts.get("family"),
        model=cpu.model if cpu.model is not None else facts.get("model"),
        stepping=cpu.stepping if cpu.stepping is not None else facts.get("stepping"),
        arch=arch,
        flags=flags,
        isa={name: name in flags for name in names},
    )


def _machine() -> str:
    """``platform.machine()`` as it reads on Linux (os.uname's, "unknown" as ""), without
    importing platform: 2-3 ms of every `tuner best`."""
    machine = os.uname().machine
    return "" if machine == "unknown" else machine


def read_cpu(root: Path, fallback: Callable[[], Mapping[str, Any]] | None = None) -> CpuInfo:
    """Read ``root/proc/cpuinfo``; call ``fallback`` (py-cpuinfo) only if it lacks a
    model name or the feature flags."""
    path = root / "proc" / "cpuinfo"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    machine = _machine() if root == Path("/") else None
    cpu = parse_cpuinfo(text, machine)
    if fallback is not None and (not cpu.model_name or not cpu.flags):
        try:
            cpu = merge_fallback(cpu, fallback())
        except Exception:  # noqa: BLE001 - a fallback that fails leaves /proc's answer
            pass
    if not cpu.model_name and cpu.arch == "aarch64" and cpu.model is not None:
        cpu = replace(cpu, model_name=f"{cpu.vendor} part {cpu.model:#x}".strip())
    return cpu
