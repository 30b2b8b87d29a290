"""What a stored winner depends on, and how to say what changed since it was chosen.

A winner depends on the hardware (its machine's hardware fingerprint), the versions of
the libraries its backend uses (not every library: an OpenVINO upgrade leaves a
PyTorch winner as it was), the tuner's version, the search space it was chosen from,
and the model's content (docs/nightly.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def libraries_of_backend(backend: str) -> tuple[str, ...]:
    """The libraries whose versions a winner of ``backend`` depends on: the
    interpreter's major.minor ("python"), then those its search-space file declares
    (``[backend] libraries``, docs/search-space.md), named as ``tuner detect`` names
    them. A backend this tuner does not declare (its file gone) depends on every
    library the tuner records: assume the worst."""
    from tuner.errors import SpaceFileError
    from tuner.space.catalog import declared_backends

    try:
        declared = declared_backends().get(backend)
    except SpaceFileError:
        declared = None
    names = [library.name for library in declared.libraries] if declared is not None else []
    if not names:
        from tuner.hardware.versions import library_versions

        names = [name for name in library_versions() if name != "python"]
    return ("python", *dict.fromkeys(names))


def library_changes(backend: str, then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``["onnxruntime 1.22.0 -> 1.23.0"]``: the backend's libraries whose versions differ."""
    changes = []
    for name in libraries_of_backend(backend):
        old, new = then.get(name), now.get(name)
        if old != new:
            changes.append(f"{name} {old or 'absent'} -> {new or 'absent'}")
    return changes


def other_library_changes(backend: str, then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The changed libraries its backend does not use."""
    mine = set(libraries_of_backend(backend))
    return [
        f"{name} {then.get(name) or 'absent'} -> {now.get(name) or 'absent'}"
        for name in sorted(set(then) | set(now))
        if name not in mine and then.get(name) != now.get(name)
    ]


def _cores(info: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    topo = info.get("topology") or {}
    return topo.get("sockets"), topo.get("cores"), topo.get("threads_per_core")


def hardware_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two ``MachineInfo.to_dict()``: the CPU, the instruction
    sets that decide kernels (``avx512_vnni appeared``), cores, NUMA nodes, memory, GPUs."""
    changes: list[str] = []
    old_cpu, new_cpu = then.get("cpu") or {}, now.get("cpu") or {}
    if old_cpu.get("model_name") != new_cpu.get("model_name"):
        changes.append(f"{old_cpu.get('model_name') or 'unknown CPU'} -> {new_cpu.get('model_name') or 'unknown CPU'}")
    old_isa = {k for k, v in (old_cpu.get("isa") or {}).items() if v}
    new_isa = {k for k, v in (new_cpu.get("isa") or {}).items() if v}
    if new_isa - old_isa:
        changes.append(f"{', '.join(sorted(new_isa - old_isa))} appeared")
    if old_isa - new_isa:
        changes.append(f"{', '.join(sorted(old_isa - new_isa))} disappeared")
    (old_sockets, old_cores, old_smt), (new_sockets, new_cores, new_smt) = _cores(then), _cores(now)
    if old_sockets != new_sockets:
        changes.append(f"{old_sockets} -> {new_sockets} sockets")
    if old_cores != new_cores:
        changes.append(f"{old_cores} -> {new_cores} cores")
    if old_smt != new_smt:
        changes.append(f"{old_smt} -> {new_smt} threads per core")
    old_nodes = len((then.get("topology") or {}).get("numa_nodes") or {})
    new_nodes = len((now.get("topology") or {}).get("numa_nodes") or {})
    if old_nodes != new_nodes:
        changes.append(f"{old_nodes} -> {new_nodes} NUMA nodes")
    old_gib, new_gib = round((then.get("memory_bytes") or 0) / 2**30), round((now.get("memory_bytes") or 0) / 2**30)
    if old_gib != new_gib:
        changes.append(f"memory {old_gib} -> {new_gib} GiB")
    old_gpus = [g.get("name") for g in then.get("gpus") or []]
    new_gpus = [g.get("name") for g in now.get("gpus") or []]
    if old_gpus != new_gpus:
        changes.append(f"GPUs {', '.join(old_gpus) or 'none'} -> {', '.join(new_gpus) or 'none'}")
    return changes


def same_cpu(then: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether two machines have the same CPU (vendor and model name): a "similar" machine."""
    old_cpu, new_cpu = then.get("cpu") or {}, now.get("cpu") or {}
    return bool(old_cpu.get("model_name")) and (old_cpu.get("vendor"), old_cpu.get("model_name")) == (
        new_cpu.get("vendor"),
        new_cpu.get("model_name"),
    )
