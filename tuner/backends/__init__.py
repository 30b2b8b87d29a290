"""The backends, by name, behind the Protocol in ``tuner.backends.base``.

A backend is one module and one search-space file: ``search_spaces/<name>.toml``
declares its dimensions and, in its ``[backend]`` table, the class that implements it,
whether a fork server starts its trials, what it uses and the libraries whose
versions key its artifacts (docs/backends/README.md). Everything here is read from
those tables (tuner.space.catalog); nothing restates them.

Importing this package imports no framework: a backend's module (and torch or
onnxruntime with it) is imported only when ``get_backend`` asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tuner.errors import UserError
from tuner.space.catalog import backend_file, declared_backends
from tuner.space.environments import env_unavailable_reason
from tuner.space.requirements import module_available

if TYPE_CHECKING:
    from tuner.backends.base import Backend
    from tuner.space.schema import SpaceFile

__all__ = ["backend_names", "get_backend", "preload_modules", "unavailable_reason"]


def backend_names() -> list[str]:
    """The declared backends: the stock default, those of this interpreter, then those
    with their own environment, each group by name."""
    return list(declared_backends())


def get_backend(name: str) -> "Backend":
    """An instance of ``name``'s class (its module imported now). Reads ``name``'s file
    only, so a trial worker parses one file."""
    decl = _file(name).backend
    assert decl is not None  # _file checked
    return getattr(importlib.import_module(decl.module), decl.class_name)()


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run in this environment (None: it can). Imports nothing."""
    spec = _file(name)
    if spec.env is not None:  # its modules live in its own environment, not in this one
        return env_unavailable_reason(spec.env)
    assert spec.backend is not None  # _file checked
    missing = [m for m in (spec.backend.module, *spec.requires.modules) if not module_available(m)]
    if missing:
        return (
            f"backend {name!r} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed"
        )
    return None


def preload_modules(name: str, model_path: str) -> list[str]:
    """What a fork server imports for ``name``'s trials of the model at ``model_path``
    (empty: its trials start cold): its file's ``preload`` (the torch family: what it
    shares, torch), then the model's transformers class ("model:<path>"). Backends
    that preload alike share a server when their trials start alike."""
    spec = backend_file(name)
    decl = spec.backend if spec is not None else None
    if decl is None or not decl.fork_served:
        return []
    return [*decl.preload, f"model:{model_path}"]


def _file(name: str) -> "SpaceFile":
    spec = backend_file(name)
    if spec is None or spec.backend is None:
        known = ", ".join(backend_names())
        if spec is not None:
            raise UserError(
                f"unknown backend {name!r}: {spec.path} has no [backend] table naming its module "
                f'(module = "package.module:Class"); the backends are: {known}'
            )
        raise UserError(f"unknown backend {name!r}; the backends are: {known}")
    return spec
