"""Stable hashes of what decides performance.

Two machines with the same hardware fingerprint should time a configuration alike;
a new software fingerprint (a torch upgrade) means stored results may be stale. Only
stable facts go in: never the hostname, free memory, clock frequency or pids, and
only instruction-set flags, not the kernel's bookkeeping flags (a kernel upgrade adds
names like ``flush_l1d`` without changing the silicon).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tuner.hardware.cpu import CpuInfo
from tuner.hardware.gpu import GpuInfo
from tuner.hardware.topology import Topology

# x86 flags that name instruction sets; everything else in "flags" is kernel state.
_X86_ISA_PREFIXES = ("avx", "amx", "sse", "ssse", "fma", "f16c", "bmi", "sha", "vaes", "vpclmulqdq", "gfni")

DIGEST_CHARS = 16


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def isa_flags(cpu: CpuInfo) -> list[str]:
    if cpu.arch == "aarch64":
        return sorted(cpu.flags)  # every aarch64 HWCAP names an ISA feature
    return sorted(f for f in cpu.flags if f.startswith(_X86_ISA_PREFIXES))


def hardware_fingerprint(cpu: CpuInfo, topology: Topology, memory_bytes: int, gpus: list[GpuInfo]) -> str:
    return _digest(
        {
            "cpu": [cpu.vendor, cpu.model_name, cpu.family, cpu.model, cpu.stepping, cpu.arch],
            "isa": isa_flags(cpu),
            "topology": [topology.sockets, topology.cores, topology.threads_per_core],
            "numa": {str(node): cpus for node, cpus in sorted(topology.numa_nodes.items())},
            "memory_gib": round(memory_bytes / 2**30),
            "gpus": [gpu.name for gpu in gpus],
        }
    )


def software_fingerprint(libraries: dict[str, str | None]) -> str:
    return _digest(sorted(libraries.items()))


def combined_fingerprint(hardware: str, software: str) -> str:
    return _digest([hardware, software])
