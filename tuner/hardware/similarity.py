"""How alike two machines are, from what the store keeps of them (``MachineInfo.to_dict()``
and the fingerprints): the ordered fallback a fleet's warm start and `tuner best
--from-similar` follow (docs/fleet.md).

Machines of one ISA class run the same int8/bf16 kernels, so their winners tend to
agree; machines with the same CPU model and ISA flags differ only in cores, memory
and libraries; machines with the same hardware fingerprint differ only in libraries.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

# The ISA classes, fastest kernels first: the first feature a CPU has names its class.
_X86_CLASSES = (
    ("amx", "amx_tile"),
    ("avx512-bf16", "avx512_bf16"),
    ("avx512-vnni", "avx512_vnni"),
    ("avx512", "avx512f"),
    ("avx2-vnni", "avx_vnni"),
    ("avx2", "avx2"),
)
_ARM_CLASSES = (("sve2", "sve2"), ("sve", "sve"), ("neon-dotprod", "asimddp"), ("neon", "asimd"))


class Similarity(IntEnum):
    """How close another machine is to this one; lower is closer."""

    SAME_HARDWARE = 0  # the same hardware fingerprint (this machine under other library versions included)
    SAME_CPU = 1  # the same CPU model (name, family, model) and ISA flags
    SAME_CLASS = 2  # the same vendor and ISA class
    ANY = 3  # anything else

    def describe(self) -> str:
        return _WORDS[self]


_WORDS = {
    Similarity.SAME_HARDWARE: "the same hardware",
    Similarity.SAME_CPU: "the same CPU model and ISA",
    Similarity.SAME_CLASS: "the same vendor and ISA class",
    Similarity.ANY: "another kind of machine",
}


def isa_class(cpu: Mapping[str, Any]) -> str:
    """``avx512-vnni``, ``amx``, ``neon-dotprod``, ...: a CPU's class from its stored info."""
    isa = cpu.get("isa") or {}
    flags = set(cpu.get("flags") or ())
    arch = cpu.get("arch") or "unknown"
    classes = _ARM_CLASSES if arch in ("aarch64", "arm64") else _X86_CLASSES
    for name, feature in classes:
        if isa.get(feature) or feature in flags:
            return name
    return str(arch)


def similarity(here_hardware: str, here_info: Mapping[str, Any], hardware: str, info: Mapping[str, Any]) -> Similarity:
    """How close the machine of (``hardware`` fingerprint, stored ``info``) is to this
    one's; a machine stored without CPU facts is only ever ``ANY`` (or the same hardware)."""
    if hardware == here_hardware:
        return Similarity.SAME_HARDWARE
    mine, theirs = _cpu(here_info), _cpu(info)
    if not mine or not theirs:
        return Similarity.ANY
    if _model(mine) == _model(theirs) and _isa(mine) == _isa(theirs):
        return Similarity.SAME_CPU
    if mine.get("vendor") == theirs.get("vendor") and isa_class(mine) == isa_class(theirs):
        return Similarity.SAME_CLASS
    return Similarity.ANY


def _cpu(info: Mapping[str, Any]) -> Mapping[str, Any]:
    cpu = info.get("cpu") if isinstance(info, Mapping) else None
    return cpu if isinstance(cpu, Mapping) else {}


def _model(cpu: Mapping[str, Any]) -> tuple[Any, ...]:
    return (cpu.get("vendor"), cpu.get("model_name"), cpu.get("family"), cpu.get("model"), cpu.get("arch"))


def _isa(cpu: Mapping[str, Any]) -> frozenset[str]:
    """The decisive ISA features the CPU has (its ``isa`` dict, or its flags when stored without one)."""
    isa = cpu.get("isa")
    if isinstance(isa, Mapping) and isa:
        return frozenset(name for name, present in isa.items() if present)
    from tuner.hardware.cpu import KNOWN_ISA

    return frozenset(set(cpu.get("flags") or ()) & KNOWN_ISA)
