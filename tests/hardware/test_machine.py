"""MachineInfo as a whole: memory, affinity, library versions, fingerprints, JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tuner.hardware import clear_cache, detect
from tuner.hardware.versions import library_versions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
REPO = Path(__file__).resolve().parents[2]
NAMES = ["cascade_lake_2s", "graviton3", "sapphire_rapids", "zen4"]


def _copy(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("name", NAMES)
def test_fixture_machine(name: str) -> None:
    machine = detect(str(FIXTURES / name))
    kb = int((FIXTURES / name / "proc" / "meminfo").read_text().split()[1])
    assert machine.memory_bytes == kb * 1024
    assert machine.available_cpus == machine.topology.logical_cpus
    assert machine.gpus == [] and machine.gpu_note  # the host's GPUs are not the fixture's
    data = json.loads(json.dumps(machine.to_dict()))
    assert data["fingerprint"] == machine.fingerprint
    assert data["cpu"]["flags"] == sorted(machine.cpu.flags)
    assert data["physical_cores_available"] == machine.topology.cores


def test_hostname_from_proc() -> None:
    assert detect(str(FIXTURES / "cascade_lake_2s")).hostname == "db-node-07"


def test_restricted_affinity(tmp_path: Path) -> None:
    root = _copy("cascade_lake_2s", tmp_path)
    (root / "proc" / "self").mkdir()
    (root / "proc" / "self" / "status").write_text("Name:\tpython\nCpus_allowed_list:\t4-5,12-13\n")
    machine = detect(str(root))
    assert machine.available_cpus == [4, 5, 12, 13]
    assert machine.physical_cores_available == 2


def test_fingerprints_differ_between_machines() -> None:
    machines = [detect(str(FIXTURES / n)) for n in NAMES]
    assert len({m.hardware_fingerprint for m in machines}) == len(NAMES)
    assert len({m.software_fingerprint for m in machines}) == 1  # same process, same libraries
    assert len({m.fingerprint for m in machines}) == len(NAMES)


def test_fingerprint_ignores_what_does_not_decide_speed(tmp_path: Path) -> None:
    before = detect(str(FIXTURES / "sapphire_rapids")).hardware_fingerprint
    root = _copy("sapphire_rapids", tmp_path)
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "hostname").write_text("renamed\n")
    cpuinfo = root / "proc" / "cpuinfo"
    _edit(cpuinfo, "cpu MHz\t\t: 2400.000", "cpu MHz\t\t: 3100.512")  # frequency
    _edit(cpuinfo, "arch_capabilities", "arch_capabilities user_shstk")  # a newer kernel's bookkeeping flag
    _edit(root / "proc" / "meminfo", "MemFree:", "MemFree:  1")  # free memory
    assert detect(str(root)).hardware_fingerprint == before


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("proc/cpuinfo", " avx512_vnni", ""),  # an ISA feature gone (a masked VM)
        ("proc/cpuinfo", "stepping\t: 8", "stepping\t: 6"),
        ("proc/meminfo", "MemTotal:       32386100", "MemTotal:       64772200"),
        ("sys/devices/system/cpu/online", "0-7", "0-5"),  # two CPUs offline
    ],
)
def test_fingerprint_follows_what_decides_speed(tmp_path: Path, file: str, old: str, new: str) -> None:
    before = detect(str(FIXTURES / "sapphire_rapids")).hardware_fingerprint
    root = _copy("sapphire_rapids", tmp_path)
    _edit(root / file, old, new)
    assert detect(str(root)).hardware_fingerprint != before


def test_library_versions_from_metadata() -> None:
    versions = library_versions()
    assert versions["torch"] == metadata.version("torch")
    assert versions["optuna"] == metadata.version("optuna")
    assert versions["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        expected = metadata.version("openvino")
    except metadata.PackageNotFoundError:
        expected = None
    assert versions["openvino"] == expected


def test_detect_is_cached_per_root() -> None:
    clear_cache()
    first = detect()
    assert detect("/") is first
    clear_cache()
    again = detect()
    assert again is not first and again.fingerprint == first.fingerprint  # stable across runs


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux")
def test_real_machine() -> None:
    machine = detect()
    assert machine.available_cpus == sorted(os.sched_getaffinity(0))
    psutil = pytest.importorskip("psutil")
    assert machine.memory_bytes == psutil.virtual_memory().total
    assert 1 <= machine.physical_cores_available <= len(machine.available_cpus)
    assert len(machine.fingerprint) == 16 and int(machine.fingerprint, 16) >= 0


def test_detect_imports_no_heavy_module() -> None:
    code = (
        "import sys; from tuner.hardware import detect; detect(); "
        "print(','.join(m for m in ('torch', 'onnxruntime', 'onnx', 'transformers', 'optuna', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
