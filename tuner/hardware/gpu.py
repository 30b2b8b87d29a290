"""NVIDIA GPUs through NVML (the nvidia-ml-py package, module ``pynvml``).

NVML raises ``NVMLError_LibraryNotFound`` where no driver is installed and other
``NVMLError`` subclasses when the driver is broken; either way the answer is "no
NVIDIA GPU" with the reason, never a traceback. The module is injectable so tests
can hand in a fake NVML on machines without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_mib: int
    driver: str
    compute_capability: str | None  # "9.0"; None when NVML cannot say


def _text(value: Any) -> str:
    # Older nvidia-ml-py releases return bytes.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _load_nvml() -> Any:
    import pynvml  # lazy: it loads libnvidia-ml with ctypes on init, not on import

    return pynvml


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# The library pynvml's nvmlInit loads on Linux (pynvml._LoadNvmlLibrary).
NVML_LIBRARY = "libnvidia-ml.so.1"


def _nvml_missing() -> str | None:
    """Why NVML cannot be used, found without importing pynvml (10-30 ms of a `tuner best`
    that must answer in 300): the note detect_gpus gives then, or None to ask NVML.
    The same notes as importing pynvml and calling nvmlInit would give."""
    import sys

    if not _installed("pynvml"):
        return "no NVIDIA GPU (nvidia-ml-py is not installed)"
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return "no NVIDIA GPU (NVML library not found: no NVIDIA driver is installed)"
    return None


def detect_gpus(nvml: Any | None = None) -> tuple[list[GpuInfo], str | None]:
    """The GPUs NVML sees, and a note saying why there are none (None when some)."""
    if nvml is None:
        missing = _nvml_missing()
        if missing is not None:
            return [], missing
        try:
            nvml = _load_nvml()
        except ImportError:
            return [], "no NVIDIA GPU (nvidia-ml-py is not installed)"
    nvml_error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except nvml_error as exc:
        return [], f"no NVIDIA GPU ({_describe(exc)})"
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability: str | None = f"{major}.{minor}"
            except nvml_error:
                capability = None
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
                    driver=driver,
                    compute_capability=capability,
                )
            )
    except nvml_error as exc:
        return [], f"no NVIDIA GPU ({_describe(exc)})"
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml_error:
            pass
    if not gpus:
        return [], "no NVIDIA GPU (the NVIDIA driver reports 0 devices)"
    return gpus, None


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    if name.endswith("LibraryNotFound"):
        return "NVML library not found: no NVIDIA driver is installed"
    if name.endswith("DriverNotLoaded"):
        return "the NVIDIA driver is not loaded"
    text = str(exc).strip()
    return f"NVML error: {text}" if text else f"NVML error: {name}"
