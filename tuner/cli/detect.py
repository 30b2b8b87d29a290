"""``tuner detect [--json]``: what this machine is, and its fingerprint."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tuner.hardware import MachineInfo, detect, format_cpulist
from tuner.hardware.cpu import isa_names_for


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="show this machine's CPU, topology, GPUs, library versions and fingerprint",
        description="Show what the tuner sees: CPU and its ISA, sockets/cores/NUMA, memory, "
        "GPUs, library versions, and the fingerprint results are stored under.",
    )
    parser.add_argument("--json", action="store_true", help="print the full description as JSON")
    parser.set_defaults(func=run)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_machine(machine: MachineInfo) -> str:
    cpu, topo = machine.cpu, machine.topology
    fields: tuple[tuple[str, object], ...]
    if cpu.arch == "aarch64":  # MIDR fields, written as lscpu writes them
        fields = (
            ("architecture", cpu.family),
            ("part", f"{cpu.model:#x}" if cpu.model is not None else None),
            ("revision", cpu.stepping),
        )
    else:
        fields = (("family", cpu.family), ("model", cpu.model), ("stepping", cpu.stepping))
    ident = ", ".join(f"{label} {value}" for label, value in fields if value is not None)
    lines = [
        ("host", machine.hostname),
        (
            "cpu",
            f"{cpu.vendor or 'unknown vendor'} {cpu.model_name or 'unknown model'}"
            + (f" ({ident})" if ident else "")
            + f", {cpu.arch}",
        ),
        (
            "topology",
            f"{_plural(topo.sockets, 'socket')}, {_plural(topo.cores, 'core')}, "
            f"{_plural(topo.threads_per_core, 'thread')} per core; {_plural(len(topo.logical_cpus), 'logical CPU')}",
        ),
        (
            "this process",
            f"CPUs {format_cpulist(machine.available_cpus)} "
            f"({_plural(machine.physical_cores_available, 'physical core')})",
        ),
    ]
    for node, cpus in sorted(topo.numa_nodes.items()):
        lines.append(("numa" if node == min(topo.numa_nodes) else "", f"node {node}: CPUs {format_cpulist(cpus)}"))
    names = isa_names_for(cpu.arch)
    lines.append(("isa", "  ".join(f"{n} {'yes' if cpu.isa.get(n) else 'no'}" for n in names) or "unknown"))
    lines.append(("memory", f"{machine.memory_bytes / 2**30:.1f} GiB"))
    if machine.gpus:
        for gpu in machine.gpus:
            capability = f", compute {gpu.compute_capability}" if gpu.compute_capability else ""
            lines.append(
                (
                    "gpu" if gpu.index == machine.gpus[0].index else "",
                    f"{gpu.index}: {gpu.name}, {gpu.memory_mib} MiB, driver {gpu.driver}{capability}",
                )
            )
    else:
        lines.append(("gpu", machine.gpu_note or "no NVIDIA GPU"))
    lines.append(("libraries", ", ".join(f"{name} {version or '-'}" for name, version in machine.libraries.items())))
    lines.append(
        (
            "fingerprint",
            f"{machine.fingerprint} (hardware {machine.hardware_fingerprint}, software {machine.software_fingerprint})",
        )
    )
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in lines)


def run(args: argparse.Namespace) -> int:
    machine = detect()
    if getattr(args, "json", False):
        print(json.dumps(machine.to_dict(), indent=2))
    else:
        print(format_machine(machine))
    return 0
