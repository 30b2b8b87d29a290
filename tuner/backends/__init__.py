"""The backends, by name, behind the Protocol in ``tuner.backends.base``.

Importing this package imports no framework: a backend's module (and torch or
onnxruntime with it) is imported only when ``get_backend`` asks for it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from tuner.errors import UserError

if TYPE_CHECKING:
    from tuner.backends.base import Backend

__all__ = ["backend_names", "get_backend", "preload_modules", "unavailable_reason"]

# name -> (module, class, top-level modules it needs to run)
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torch": ("tuner.backends.torch_eager", "TorchEagerBackend", ("torch", "transformers")),
    "onnxruntime": (
        "tuner.backends.onnxruntime",
        "OnnxRuntimeBackend",
        ("onnxruntime", "onnx", "torch", "transformers"),
    ),
    "torchscript": ("tuner.backends.torchscript", "TorchScriptBackend", ("torch", "transformers")),
    "torch_compile": ("tuner.backends.torch_compile", "TorchCompileBackend", ("torch", "transformers")),
    "torch_cuda": ("tuner.backends.torch_cuda", "TorchCudaBackend", ("torch", "transformers")),
    # torch + transformers + onnx export the graph OpenVINO converts (int8 also needs nncf).
    "openvino": ("tuner.backends.openvino", "OpenVinoBackend", ("openvino", "onnx", "torch", "transformers")),
    # These run in their own environment (search_spaces/<name>.toml [env]); the
    # modules are those of that environment.
    "ipex": ("tuner.backends.ipex", "IpexBackend", ("intel_extension_for_pytorch", "torch", "transformers")),
    "onnxruntime_cuda": (
        "tuner.backends.ort_cuda",
        "OrtCudaBackend",
        ("onnxruntime", "onnx", "torch", "transformers"),
    ),
    "onnxruntime_openvino": (
        "tuner.backends.ort_openvino",
        "OrtOpenVinoBackend",
        ("onnxruntime", "onnx", "torch", "transformers"),
    ),
}


# Backends whose trials a fork server starts with the imports done
# (tuner.trial.forkserver): importing torch and transformers' model class is most of
# their fixed cost (about 10 s here); an ONNX Runtime or OpenVINO trial with its
# artifact cached imports neither and starts in about a second anyway. Not IPEX: its
# forked trials measured 0.2-0.3 CPUs of other processes' time on their cores that
# its cold trials do not (cause not found; its server itself is idle), so it starts
# cold.
_FORK_SERVED = ("torch", "torchscript", "torch_compile", "torch_cuda")


def preload_modules(name: str, model_path: str) -> list[str]:
    """What a fork server imports for ``name``'s trials of the model at ``model_path``
    (empty: its trials start cold): what the torch family shares (torch), then the
    model's transformers class ("model:<path>"). The same list for every torch-family
    backend, so their trials share a server when they start alike."""
    if name not in _FORK_SERVED:
        return []
    return ["tuner.backends._torch_common", f"model:{model_path}"]


def backend_names() -> list[str]:
    return list(_REGISTRY)


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run in this environment (None: it can). Imports nothing."""
    _, _, needs = _entry(name)
    from tuner.envs import env_for_backend, env_unavailable_reason

    env = env_for_backend(name)
    if env is not None:  # its modules live in its own environment, not in this one
        return env_unavailable_reason(env)
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        return f"backend {name!r} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed"
    return None


def get_backend(name: str) -> "Backend":
    module_name, class_name, _ = _entry(name)
    return getattr(importlib.import_module(module_name), class_name)()


def _entry(name: str) -> tuple[str, str, tuple[str, ...]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; the backends are: {', '.join(_REGISTRY)}") from None
