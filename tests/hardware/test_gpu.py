"""GPU detection through NVML: a fake NVML stands in for hardware this machine lacks
(it raises pynvml's own exception classes); the real NVML is asked too, and the
real-GPU checks run only where a GPU is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml
import pytest

from tuner.hardware import detect
from tuner.hardware.gpu import detect_gpus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


@dataclass
class _Memory:
    total: int


@dataclass
class FakeNvml:
    """The slice of the pynvml module the tuner calls."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    init_error: int | None = None  # an NVML_ERROR_* code nvmlInit raises
    lost_at: int | None = None  # device index whose queries raise GPU_IS_LOST
    driver: Any = "550.54.15"
    shutdowns: int = 0
    NVMLError = pynvml.NVMLError

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index == self.lost_at:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return self.devices[handle]["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:
        return _Memory(self.devices[handle]["mib"] * 1024 * 1024)

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        if self.devices[handle].get("cc") is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        major, minor = self.devices[handle]["cc"]
        return int(major), int(minor)


H100 = {"name": "NVIDIA H100 80GB HBM3", "mib": 81559, "cc": (9, 0)}
# Old nvidia-ml-py releases return bytes; some boards do not report a capability.
OLD_BOARD = {"name": b"Tesla T4", "mib": 15360, "cc": None}


def test_gpus_present() -> None:
    nvml = FakeNvml(devices=[H100, OLD_BOARD], driver=b"535.104.05")
    gpus, note = detect_gpus(nvml)
    assert note is None
    assert [(g.index, g.name, g.memory_mib, g.driver, g.compute_capability) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559, "535.104.05", "9.0"),
        (1, "Tesla T4", 15360, "535.104.05", None),
    ]
    assert nvml.shutdowns == 1


def test_library_not_found() -> None:
    gpus, note = detect_gpus(FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert gpus == []
    assert note == "no NVIDIA GPU (NVML library not found: no NVIDIA driver is installed)"


def test_driver_not_loaded() -> None:
    gpus, note = detect_gpus(FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert gpus == [] and note == "no NVIDIA GPU (the NVIDIA driver is not loaded)"


def test_driver_error_during_enumeration() -> None:
    nvml = FakeNvml(devices=[H100, H100], lost_at=1)
    gpus, note = detect_gpus(nvml)
    assert gpus == [] and note == "no NVIDIA GPU (NVML error: GPU is lost)"
    assert nvml.shutdowns == 1  # NVML is shut down even when a query fails


def test_zero_devices() -> None:
    gpus, note = detect_gpus(FakeNvml())
    assert gpus == [] and note == "no NVIDIA GPU (the NVIDIA driver reports 0 devices)"


def test_machine_with_fake_gpu() -> None:
    with_gpu = detect(str(FIXTURES / "sapphire_rapids"), nvml=FakeNvml(devices=[H100]))
    without = detect(str(FIXTURES / "sapphire_rapids"), nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert [g.name for g in with_gpu.gpus] == ["NVIDIA H100 80GB HBM3"] and with_gpu.gpu_note is None
    assert without.gpus == [] and (without.gpu_note or "").startswith("no NVIDIA GPU (")
    # A GPU changes what runs fast, so it changes the hardware fingerprint.
    assert with_gpu.hardware_fingerprint != without.hardware_fingerprint
    assert with_gpu.to_dict()["gpus"][0]["compute_capability"] == "9.0"


def _real_nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_real_nvml_never_raises() -> None:
    gpus, note = detect_gpus()
    assert (gpus and note is None) or (not gpus and note and note.startswith("no NVIDIA GPU ("))


@pytest.mark.skipif(not _real_nvml_works(), reason="no NVIDIA driver on this machine")
def test_real_gpu() -> None:
    gpus, note = detect_gpus()
    assert note is None and gpus
    for gpu in gpus:
        assert gpu.name and gpu.memory_mib > 1024 and gpu.driver
        assert gpu.compute_capability is None or gpu.compute_capability[0].isdigit()



def test_the_quick_check_gives_what_nvml_itself_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """detect_gpus finds a missing NVML without importing pynvml (start-up time of
    `tuner best`): the same answer as asking pynvml, here and without nvidia-ml-py."""
    from tuner.hardware import gpu

    quick = detect_gpus()
    with monkeypatch.context() as patched:
        patched.setattr(gpu, "_nvml_missing", lambda: None)  # always ask pynvml
        assert detect_gpus() == quick

    def not_installed() -> None:
        raise ImportError("no pynvml")

    with monkeypatch.context() as patched:
        patched.setattr(gpu, "_installed", lambda module: False)
        missing = detect_gpus()
    with monkeypatch.context() as patched:
        patched.setattr(gpu, "_nvml_missing", lambda: None)
        patched.setattr(gpu, "_load_nvml", not_installed)
        assert detect_gpus() == missing == ([], "no NVIDIA GPU (nvidia-ml-py is not installed)")
