"""Installed versions of the libraries that decide inference speed.

Read from package metadata (importlib.metadata), never by importing: importing torch
alone takes seconds, and ``tuner detect`` must be quick.
"""

from __future__ import annotations

import sys
from importlib import metadata

# Library -> the distributions that provide it (the first one installed wins):
# onnxruntime ships as several builds under different names.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),  # decides the openvino backend's int8 IR
    "transformers": ("transformers",),
    "optuna": ("optuna",),
    "intel_extension_for_pytorch": ("intel-extension-for-pytorch",),
}


def distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def library_versions() -> dict[str, str | None]:
    """Library name -> installed version or None.

    "python" is the interpreter's major.minor: a patch release does not change
    inference speed, and re-tuning for one would waste a night.
    """
    versions: dict[str, str | None] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    for library, distributions in LIBRARIES.items():
        versions[library] = distribution_version(*distributions)
    return versions
