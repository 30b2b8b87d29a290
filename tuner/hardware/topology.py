"""Sockets, cores, SMT siblings and NUMA nodes, from /sys/devices/system.

The binding a trial gets is built from this: one logical CPU per physical core first
(SMT siblings share a core's execution units, so a second thread on a core adds
little to a GEMM), the CPUs of one NUMA node before another's (remote memory is
slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8-11"`` -> [0, 1, 2, 3, 8, 9, 10, 11] (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        if sep:
            stride = 1
            if ":" in last:  # "0-15:2" (stride form, rare but legal)
                last, step = last.split(":", 1)
                stride = int(step)
            cpus.update(range(int(first), int(last) + 1, stride))
        else:
            cpus.add(int(first))
    return sorted(cpus)


def format_cpulist(cpus: list[int] | set[int]) -> str:
    """[0, 1, 2, 3, 8] -> ``"0-3,8"`` (what taskset -c and numactl accept)."""
    ordered = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


@dataclass(frozen=True)
class Topology:
    sockets: int
    cores: int
    threads_per_core: int
    logical_cpus: list[int]
    numa_nodes: dict[int, list[int]]
    core_of: dict[int, tuple[int, int]]  # logical cpu -> (package, core id)

    def node_of(self, cpu: int) -> int:
        for node, cpus in self.numa_nodes.items():
            if cpu in cpus:
                return node
        return min(self.numa_nodes, default=0)

    def _usable(self, allowed: set[int] | None) -> list[int]:
        cpus = self.logical_cpus if allowed is None else [c for c in self.logical_cpus if c in allowed]
        return sorted(cpus)

    def physical_cpus(self, allowed: set[int] | None = None) -> list[int]:
        """One logical CPU (the lowest) per physical core, ordered by NUMA node then
        core; only cores with at least one CPU in ``allowed``."""
        first: dict[tuple[int, int], int] = {}
        for cpu in self._usable(allowed):
            first.setdefault(self.core_of.get(cpu, (0, cpu)), cpu)
        return sorted(first.values(), key=lambda c: (self.node_of(c), c))

    def cpus_for(self, threads: int, allowed: set[int] | None = None, node: int | None = None) -> list[int]:
        """The CPU list a binding uses for ``threads`` threads.

        Physical cores first (one CPU per core), then SMT siblings; within each, one
        NUMA node before the next: ``node`` if given, else the lowest node whose
        physical cores can hold every thread, else the node with the most cores.
        Raises ValueError when the allowed CPUs cannot hold ``threads``.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        usable = self._usable(allowed)
        if node is not None and node not in self.numa_nodes:
            raise ValueError(f"NUMA node {node} does not exist (nodes: {sorted(self.numa_nodes)})")
        if node is not None and not any(self.node_of(c) == node for c in usable):
            raise ValueError(f"no allowed CPU on NUMA node {node}")
        if threads > len(usable):
            raise ValueError(f"{threads} threads need {threads} CPUs but only {len(usable)} are allowed")
        primary = self.physical_cpus(set(usable))
        secondary = [c for c in usable if c not in set(primary)]
        per_node: dict[int, int] = {}
        for cpu in primary:
            per_node[self.node_of(cpu)] = per_node.get(self.node_of(cpu), 0) + 1
        if node is not None:
            start = node
        else:
            fitting = sorted(n for n, count in per_node.items() if count >= threads)
            start = fitting[0] if fitting else max(sorted(per_node), key=lambda n: per_node[n])
        rank = {n: (0 if n == start else 1, n) for n in self.numa_nodes}

        def order(cpus: list[int]) -> list[int]:
            return sorted(cpus, key=lambda c: (rank.get(self.node_of(c), (2, 0)), c))

        return (order(primary) + order(secondary))[:threads]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _proc_core_ids(cpuinfo_text: str) -> dict[int, tuple[int, int]]:
    """(physical id, core id) per processor from /proc/cpuinfo, for kernels without
    /sys topology (some containers mask /sys)."""
    found: dict[int, tuple[int, int]] = {}
    for block in cpuinfo_text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        cpu = int(fields["processor"])
        if "core id" in fields:
            found[cpu] = (int(fields.get("physical id", "0")), int(fields["core id"]))
    return found


def read_topology(root: Path, cpuinfo_text: str = "") -> Topology:
    system = root / "sys" / "devices" / "system"
    online = _read(system / "cpu" / "online")
    if online:
        logical = parse_cpulist(online)
    else:
        logical = sorted(int(p.name[3:]) for p in (system / "cpu").glob("cpu[0-9]*") if p.name[3:].isdigit())
    proc_ids = _proc_core_ids(cpuinfo_text) if cpuinfo_text else {}
    if not logical:
        logical = sorted(proc_ids) or [0]

    core_of: dict[int, tuple[int, int]] = {}
    for cpu in logical:
        topo = system / "cpu" / f"cpu{cpu}" / "topology"
        package, core = _read(topo / "physical_package_id"), _read(topo / "core_id")
        if package is not None and core is not None:
            # Older aarch64 kernels report package -1 ("unknown"): one package.
            core_of[cpu] = (max(int(package), 0), int(core))
        elif cpu in proc_ids:
            core_of[cpu] = proc_ids[cpu]
        else:
            core_of[cpu] = (0, cpu)  # nothing says otherwise: a core of its own

    online_set = set(logical)
    numa: dict[int, list[int]] = {}
    for node_dir in sorted((system / "node").glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        cpulist = _read(node_dir / "cpulist")
        cpus = [c for c in parse_cpulist(cpulist or "") if c in online_set]
        # Memory-only nodes (CXL, HBM in flat mode) have no CPUs to bind threads to.
        if cpus:
            numa[int(node_dir.name[4:])] = cpus
    unplaced = online_set - {c for cpus in numa.values() for c in cpus}
    if not numa:
        numa = {0: sorted(logical)}
    elif unplaced:
        first = min(numa)
        numa[first] = sorted(set(numa[first]) | unplaced)

    per_core: dict[tuple[int, int], int] = {}
    for key in core_of.values():
        per_core[key] = per_core.get(key, 0) + 1
    return Topology(
        sockets=len({package for package, _ in core_of.values()}),
        cores=len(per_core),
        threads_per_core=max(per_core.values(), default=1),
        logical_cpus=sorted(logical),
        numa_nodes=numa,
        core_of=core_of,
    )
