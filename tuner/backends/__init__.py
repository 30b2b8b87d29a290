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

__all__ = ["backend_names", "get_backend", "unavailable_reason"]

# name -> (module, class, top-level modules it needs to run)
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torch": ("tuner.backends.torch_eager", "TorchEagerBackend", ("torch", "transformers")),
    "onnxruntime": (
        "tuner.backends.onnxruntime",
        "OnnxRuntimeBackend",
        ("onnxruntime", "onnx", "torch", "transformers"),
    ),
}


def backend_names() -> list[str]:
    return list(_REGISTRY)


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run in this environment (None: it can). Imports nothing."""
    _, _, needs = _entry(name)
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
