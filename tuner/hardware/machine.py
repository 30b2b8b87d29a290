"""One ``MachineInfo`` for the machine (or a captured fixture tree): CPU, topology,
memory, the CPUs this process may use, GPUs, library versions and fingerprints.

``$TUNER_HW_ROOT`` names a tree (``tests/fixtures/cpus/<name>``) that every ``detect()``
without an explicit root reads instead of ``/``: the process then sees itself on that
machine (its CPU, topology, memory and fingerprint) while it still runs here, so the
CPUs it may use are this process's own that the tree also has. Tests use it to move a
database to another CPU in a subprocess (docs/hardware.md, docs/nightly.md).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuner.errors import UserError
from tuner.hardware.cpu import CpuInfo, py_cpuinfo_facts, read_cpu
from tuner.hardware.fingerprint import combined_fingerprint, hardware_fingerprint, software_fingerprint
from tuner.hardware.gpu import GpuInfo, detect_gpus
from tuner.hardware.topology import Topology, parse_cpulist, read_topology
from tuner.hardware.versions import library_versions


@dataclass(frozen=True)
class MachineInfo:
    hostname: str
    cpu: CpuInfo
    topology: Topology
    memory_bytes: int
    available_cpus: list[int]  # os.sched_getaffinity: what this process may run on
    gpus: list[GpuInfo]
    gpu_note: str | None  # "no NVIDIA GPU (why)" when gpus is empty
    libraries: dict[str, str | None]
    hardware_fingerprint: str
    software_fingerprint: str
    fingerprint: str

    @property
    def physical_cores_available(self) -> int:
        """Physical cores with at least one CPU this process may use."""
        return len(self.topology.physical_cpus(set(self.available_cpus)))

    def to_dict(self) -> dict[str, Any]:
        cpu = asdict(self.cpu)
        cpu["flags"] = sorted(self.cpu.flags)
        topo = self.topology
        return {
            "hostname": self.hostname,
            "cpu": cpu,
            "topology": {
                "sockets": topo.sockets,
                "cores": topo.cores,
                "threads_per_core": topo.threads_per_core,
                "logical_cpus": list(topo.logical_cpus),
                # JSON object keys are strings; say so rather than let json.dumps do it.
                "numa_nodes": {str(node): cpus for node, cpus in sorted(topo.numa_nodes.items())},
                "core_of": {str(cpu_id): list(core) for cpu_id, core in sorted(topo.core_of.items())},
            },
            "memory_bytes": self.memory_bytes,
            "available_cpus": list(self.available_cpus),
            "physical_cores_available": self.physical_cores_available,
            "gpus": [asdict(gpu) for gpu in self.gpus],
            "gpu_note": self.gpu_note,
            "libraries": dict(self.libraries),
            "hardware_fingerprint": self.hardware_fingerprint,
            "software_fingerprint": self.software_fingerprint,
            "fingerprint": self.fingerprint,
        }


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _memory_bytes(root: Path) -> int:
    for line in _read(root / "proc" / "meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # the kernel writes kB meaning KiB
    return 0


def _hostname(root: Path, is_host: bool) -> str:
    name = _read(root / "proc" / "sys" / "kernel" / "hostname").strip()
    if name:
        return name
    if not is_host:
        return root.name
    import socket  # here: /proc names the host almost always, and socket costs tuner best's start-up

    return socket.gethostname()


def _available_cpus(root: Path, is_host: bool, logical: list[int], here: bool = False) -> list[int]:
    if here and hasattr(os, "sched_getaffinity") and not (root / "proc" / "self" / "status").is_file():
        # A tree standing for this machine ($TUNER_HW_ROOT): what this process may really use.
        mine = os.sched_getaffinity(0)
        return sorted(mine & set(logical)) or sorted(logical)[: len(mine)]
    if is_host and hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
    else:
        # A fixture tree may carry proc/self/status to stand for a restricted process.
        allowed = set(logical)
        for line in _read(root / "proc" / "self" / "status").splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed = set(parse_cpulist(line.split(":", 1)[1]))
    return sorted(allowed & set(logical)) or sorted(allowed)


def _detect(root: Path, nvml: object | None, here: bool = False) -> MachineInfo:
    """``here``: the tree stands for the machine this process runs on ($TUNER_HW_ROOT)."""
    is_host = root == Path("/")
    # py-cpuinfo describes the running CPU, so it may only fill gaps for the host.
    cpu = read_cpu(root, fallback=py_cpuinfo_facts if is_host else None)
    topology = read_topology(root, _read(root / "proc" / "cpuinfo"))
    memory = _memory_bytes(root)
    gpus: list[GpuInfo]
    note: str | None
    if nvml is None and not is_host:
        # A fixture describes another machine: the host's GPUs are not its GPUs.
        gpus, note = [], "no NVIDIA GPU (not probed for a captured machine)"
    else:
        gpus, note = detect_gpus(nvml)
    libraries = library_versions()
    hardware = hardware_fingerprint(cpu, topology, memory, gpus)
    software = software_fingerprint(libraries)
    return MachineInfo(
        hostname=_hostname(root, is_host or here),
        cpu=cpu,
        topology=topology,
        memory_bytes=memory,
        available_cpus=_available_cpus(root, is_host, topology.logical_cpus, here),
        gpus=gpus,
        gpu_note=note,
        libraries=libraries,
        hardware_fingerprint=hardware,
        software_fingerprint=software,
        fingerprint=combined_fingerprint(hardware, software),
    )


# The tree every detect() without a root reads instead of "/" (module docstring).
HW_ROOT_ENV = "TUNER_HW_ROOT"


@functools.cache
def _detect_cached(root: str, here: bool) -> MachineInfo:
    return _detect(Path(root), None, here)


def detect(root: str | None = None, nvml: object | None = None) -> MachineInfo:
    """Describe the machine under ``root`` ("/" is this one; None: ``$TUNER_HW_ROOT``
    when set, else "/").

    Cached per root for the process: hardware does not change under a running tuner
    and py-cpuinfo's fallback costs a second. An injected ``nvml`` bypasses the cache.
    """
    here = False
    if root is None:
        override = os.environ.get(HW_ROOT_ENV, "").strip()
        here = bool(override) and Path(override).resolve() != Path("/")
        root = override if here else "/"
        if here and not (Path(root) / "proc" / "cpuinfo").is_file():
            raise UserError(
                f"${HW_ROOT_ENV}={override} has no proc/cpuinfo; point it at a captured machine's tree "
                "(e.g. tests/fixtures/cpus/zen4) or unset it"
            )
    if nvml is not None:
        return _detect(Path(root).resolve(), nvml, here)
    return _detect_cached(str(Path(root).resolve()), here)


def clear_cache() -> None:
    _detect_cached.cache_clear()
