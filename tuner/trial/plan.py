"""From a configuration to how its process starts: the binding prefix (numactl or
taskset), the environment (LD_PRELOAD, MALLOC_CONF, OMP_*/KMP_*), the CPU set, and
what the probe must find once it runs.

Shared by trials and deployment (``tuner best --format shell``, ``tuner launch``,
``tuner export``), so what is measured is what is deployed.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.hardware.topology import format_cpulist
from tuner.trial.knobs import MANAGED_VARIABLES, allocator_settings, openmp_settings

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo


@dataclass(frozen=True)
class RuntimePlan:
    """How to start one process for a config."""

    prefix: list[str] = field(default_factory=list)  # numactl / taskset argv, or empty
    env: dict[str, str] = field(default_factory=dict)  # variables the config sets
    cpus: list[int] | None = None  # the binding's CPU set (None: not bound)
    notes: list[str] = field(default_factory=list)  # what was adapted, e.g. a numactl fallback
    # What the probe must report (tuner.trial.probe.differences): cpus, threads,
    # mempolicy, malloc, jemalloc options, OpenMP runtime and its settings, env.
    expect: dict[str, Any] = field(default_factory=dict)
    instance: int = 0
    instances: int = 1

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` without any variable a knob manages, plus this plan's."""
        env = {k: v for k, v in base.items() if k not in MANAGED_VARIABLES}
        env.update(self.env)
        return env

    @property
    def unset(self) -> list[str]:
        """Managed variables this plan does not set (a deployment removes them)."""
        return [name for name in MANAGED_VARIABLES if name not in self.env]

    def describe(self) -> list[str]:
        """What this plan applies, one item per line, for --verbose and ``tuner measure``."""
        lines = [f"binding: {' '.join(self.prefix) if self.prefix else 'none'}"]
        lines += [f"{k}={v}" for k, v in self.env.items()]
        if self.unset:
            lines.append("unset: " + " ".join(self.unset))
        lines += [f"note: {n}" for n in self.notes]
        return lines


def threads_per_instance(config: dict[str, Any], machine: "MachineInfo") -> int:
    """Intra-op threads of one process: the config's ``threads``, or for a throughput
    config (``instances``) the physical cores divided among the instances."""
    cores = machine.physical_cores_available
    if "instances" in config:
        n = config["instances"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"instances={n!r} must be an integer >= 1")
        if n > cores:
            raise ValueError(f"{n} instances need at least {n} physical cores; {cores} are available")
        return cores // n
    return int(config.get("threads") or cores)


def instance_count(config: dict[str, Any]) -> int:
    return int(config.get("instances", 1))


def _start_node(config: dict[str, Any], machine: "MachineInfo") -> int | None:
    """The NUMA node id a binding fills first; ``numa_node`` indexes the nodes that
    have CPUs this process may use (ids can have gaps)."""
    if "numa_node" not in config:
        return None
    index = config["numa_node"]
    allowed = set(machine.available_cpus)
    nodes = sorted(n for n, cpus in machine.topology.numa_nodes.items() if allowed & set(cpus))
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(nodes):
        raise ValueError(f"numa_node={index!r}: this machine has {len(nodes)} NUMA node(s) with usable CPUs")
    return nodes[index]


def _binding_cpus(config: dict[str, Any], machine: "MachineInfo", count: int) -> list[int]:
    """``count`` CPUs for a binding: physical cores first, the start node first;
    ``core_order = "last"`` takes each node's highest-numbered cores instead."""
    topology = machine.topology
    allowed = set(machine.available_cpus)
    node = _start_node(config, machine)
    order = config.get("core_order", "first")
    if order not in ("first", "last"):
        raise ValueError(f"core_order={order!r} is not one of ['first', 'last']")
    first = topology.cpus_for(count, allowed=allowed, node=node)
    primary = topology.physical_cpus(allowed)
    if order == "first" or count > len(primary):
        return first  # with SMT siblings in play, cpus_for's order stands
    # Every physical core, start node first; within each node, highest first.
    start = node if node is not None else topology.node_of(first[0])  # the node "first" would start on
    every = topology.cpus_for(len(primary), allowed=allowed, node=start)
    groups: dict[int, list[int]] = {}
    for cpu in every:
        groups.setdefault(topology.node_of(cpu), []).append(cpu)
    return [cpu for cpus in groups.values() for cpu in reversed(cpus)][:count]


@functools.lru_cache(maxsize=64)
def _numactl_refusal_cached(numactl: str, args: tuple[str, ...]) -> str | None:
    import subprocess  # here: only a numactl binding runs it, and `tuner best` imports this module

    try:
        proc = subprocess.run([numactl, *args, "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def numactl_refusal(args: list[str]) -> str | None:
    """Why ``numactl ARGS true`` fails here (None: it works, or numactl is absent and
    the launcher reports that). Containers often forbid set_mempolicy."""
    numactl = shutil.which("numactl")
    if numactl is None:
        return None
    return _numactl_refusal_cached(numactl, tuple(args))


def plan_runtime(config: dict[str, Any], machine: "MachineInfo", instance: int = 0) -> RuntimePlan:
    """The prefix, environment and expectations that apply ``config``'s runtime knobs
    on ``machine``, for instance ``instance`` of a throughput config.

    Raises ValueError for a config this machine cannot run (too many threads, a
    NUMA node it lacks) and its subclass MissingLibraryError for a preload library
    it does not have.
    """
    topology = machine.topology
    threads = threads_per_instance(config, machine)
    instances = instance_count(config)
    if not 0 <= instance < instances:
        raise ValueError(f"instance {instance} of {instances}")
    env = {"OMP_NUM_THREADS": str(threads)}
    expect: dict[str, Any] = {"threads": threads}
    notes: list[str] = []
    prefix: list[str] = []
    cpus: list[int] | None = None
    binding = config.get("binding", "none")
    if binding not in ("none", "taskset", "numactl"):
        raise ValueError(f"unknown binding {binding!r}")
    if binding != "none":
        every = _binding_cpus(config, machine, threads * instances)
        cpus = every[instance * threads : (instance + 1) * threads]
        cpu_list = format_cpulist(cpus)
        prefix = ["taskset", "-c", cpu_list]
        if binding == "numactl":
            nodes = format_cpulist({topology.node_of(c) for c in cpus})
            memory = config.get("numa_memory", "membind")
            if memory not in ("membind", "localalloc"):
                raise ValueError(f"numa_memory={memory!r} is not one of ['membind', 'localalloc']")
            args = [f"--physcpubind={cpu_list}", f"--membind={nodes}" if memory == "membind" else "--localalloc"]
            refusal = numactl_refusal(args)
            if refusal is None:
                prefix = ["numactl", *args]
                # As /proc/self/numa_maps writes the task's memory policy.
                expect["mempolicy"] = f"bind:{nodes}" if memory == "membind" else "local"
            else:
                notes.append(
                    f"numactl refused here ({refusal}); bound with taskset -c {cpu_list} instead, "
                    f"without a memory policy"
                )
        expect["cpus"] = cpus
    run_on = cpus if cpus is not None else sorted(machine.available_cpus)
    cores = len({topology.core_of.get(c, (0, c)) for c in run_on})
    allocator = allocator_settings(config)
    openmp = openmp_settings(config, threads, run_on, cores)
    # The allocator first: it must own malloc before anything else allocates.
    preload = allocator.preload + openmp.preload
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    env.update(allocator.env)
    env.update(openmp.env)
    expect.update(allocator.expect)
    expect.update(openmp.expect)
    expect["env"] = dict(env)
    return RuntimePlan(
        prefix=prefix, env=env, cpus=cpus, notes=notes, expect=expect, instance=instance, instances=instances
    )


def plan_instances(config: dict[str, Any], machine: "MachineInfo") -> list[RuntimePlan]:
    """One plan per instance (one for a latency config)."""
    return [plan_runtime(config, machine, i) for i in range(instance_count(config))]
