"""What this machine is: CPU ISA, topology, memory, GPUs, library versions, and the
fingerprints that say when stored results still apply."""

from tuner.hardware.cpu import KNOWN_ISA, CpuInfo
from tuner.hardware.gpu import GpuInfo
from tuner.hardware.machine import MachineInfo, clear_cache, detect
from tuner.hardware.topology import Topology, format_cpulist, parse_cpulist

__all__ = [
    "KNOWN_ISA",
    "CpuInfo",
    "GpuInfo",
    "MachineInfo",
    "Topology",
    "clear_cache",
    "detect",
    "format_cpulist",
    "parse_cpulist",
]
