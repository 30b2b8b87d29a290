"""Sockets, cores, SMT and NUMA from /sys, and the CPU lists bindings use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuner.hardware.topology import Topology, format_cpulist, parse_cpulist, read_topology

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


def _topology(name: str) -> Topology:
    root = FIXTURES / name
    return read_topology(root, (root / "proc" / "cpuinfo").read_text())


def test_cpulist_round_trip() -> None:
    assert parse_cpulist("0-3,8-11\n") == [0, 1, 2, 3, 8, 9, 10, 11]
    assert parse_cpulist("0-6:2,9") == [0, 2, 4, 6, 9]
    assert parse_cpulist("") == []
    assert format_cpulist([8, 0, 1, 2, 3, 11, 10, 9]) == "0-3,8-11"
    assert format_cpulist({5}) == "5"


def test_two_socket_numa_with_smt() -> None:
    topo = _topology("cascade_lake_2s")
    assert (topo.sockets, topo.cores, topo.threads_per_core) == (2, 8, 2)
    assert topo.logical_cpus == list(range(16))
    assert topo.numa_nodes == {0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]}
    # Core ids repeat per package (and are sparse on a harvested die): the package
    # tells core 0 of socket 0 from core 0 of socket 1.
    assert topo.core_of[0] == topo.core_of[8] == (0, 0)
    assert topo.core_of[4] == (1, 0)
    assert topo.core_of[3] == (0, 12)


def test_physical_cpus_one_per_core_by_node() -> None:
    topo = _topology("cascade_lake_2s")
    assert topo.physical_cpus() == [0, 1, 2, 3, 4, 5, 6, 7]
    # Only a core's sibling is allowed: that sibling stands for the core.
    assert topo.physical_cpus({4, 8, 9}) == [8, 9, 4]


def test_cpus_for_prefers_physical_cores_on_one_node() -> None:
    topo = _topology("cascade_lake_2s")
    assert topo.cpus_for(4) == [0, 1, 2, 3]
    assert topo.cpus_for(4, node=1) == [4, 5, 6, 7]
    assert topo.cpus_for(6) == [0, 1, 2, 3, 4, 5]  # physical cores of both nodes before siblings
    assert topo.cpus_for(10) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    # Node 1 holds 3 physical cores of the allowed set, node 0 only one: node 1 wins.
    assert topo.cpus_for(3, allowed={0, 8, 4, 5, 6}) == [4, 5, 6]
    assert topo.cpus_for(2, allowed={0, 8}) == [0, 8]


@pytest.mark.parametrize(
    ("threads", "allowed", "node"),
    [(17, None, None), (0, None, None), (2, None, 5), (2, {4, 5, 12}, 0), (3, {0, 1}, None)],
)
def test_cpus_for_impossible(threads: int, allowed: set[int] | None, node: int | None) -> None:
    with pytest.raises(ValueError):
        _topology("cascade_lake_2s").cpus_for(threads, allowed, node)


def test_smt_siblings_numbered_after_cores() -> None:
    topo = _topology("sapphire_rapids")
    assert (topo.sockets, topo.cores, topo.threads_per_core) == (1, 4, 2)
    assert topo.physical_cpus() == [0, 1, 2, 3]
    assert topo.cpus_for(6) == [0, 1, 2, 3, 4, 5]


def test_arm_without_smt() -> None:
    topo = _topology("graviton3")
    assert (topo.sockets, topo.cores, topo.threads_per_core) == (1, 8, 1)
    assert topo.numa_nodes == {0: list(range(8))}


def test_falls_back_to_proc_ids_without_sys(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "cascade_lake_2s" / "proc", tmp_path / "proc")
    topo = read_topology(tmp_path, (tmp_path / "proc" / "cpuinfo").read_text())
    assert (topo.sockets, topo.cores, topo.threads_per_core) == (2, 8, 2)
    assert topo.numa_nodes == {0: list(range(16))}  # no /sys/devices/system/node: one node


def test_unknown_package_id_means_one_package(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "graviton3", tmp_path / "g3")
    for path in (tmp_path / "g3" / "sys").rglob("physical_package_id"):
        path.write_text("-1\n")  # what older aarch64 kernels write
    assert read_topology(tmp_path / "g3").sockets == 1


@pytest.mark.skipif(not Path("/sys/devices/system/cpu/online").exists(), reason="needs Linux /sys")
def test_real_machine() -> None:
    topo = read_topology(Path("/"), Path("/proc/cpuinfo").read_text())
    online = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
    assert topo.logical_cpus == online
    assert sorted(c for cpus in topo.numa_nodes.values() for c in cpus) == online
    assert 1 <= topo.sockets <= topo.cores <= len(online)
    assert topo.cores * topo.threads_per_core >= len(online)
    assert len(topo.physical_cpus()) == topo.cores
