"""Which environments the search-space files declare, and which backend uses which.

The ``[env]`` table of a backend file is the single place an environment is
described (its pip requirements, the modules that must import in it), so adding a
backend that needs one is adding a file, as for any backend.
"""

from __future__ import annotations

from pathlib import Path

from tuner.errors import UserError
from tuner.space.catalog import backend_file, read_files
from tuner.space.schema import EnvDecl, SpaceFile

__all__ = ["EnvDecl", "declared_envs", "env_for_backend"]


def _backend_files(directory: Path | None) -> dict[str, SpaceFile]:
    _, files = read_files(directory)
    return files


def declared_envs(directory: Path | None = None) -> dict[str, tuple[EnvDecl, list[str]]]:
    """Environment name -> (its declaration, the backends that run in it), by name."""
    found: dict[str, tuple[EnvDecl, list[str]]] = {}
    for backend, spec in sorted(_backend_files(directory).items()):
        env = spec.env
        if env is None:
            continue
        found.setdefault(env.name, (env, []))[1].append(backend)
    return dict(sorted(found.items()))


def env_for_backend(backend: str, directory: Path | None = None) -> EnvDecl | None:
    """The environment ``backend``'s trials run in (None: the tuner's own interpreter).
    Asked once per trial: it reads one file, parsed once per content (tuner.space.catalog)."""
    spec = backend_file(backend, directory)
    return spec.env if spec is not None else None


def lookup(name: str, directory: Path | None = None) -> tuple[EnvDecl, list[str]]:
    envs = declared_envs(directory)
    if name not in envs:
        known = ", ".join(envs) or "none"
        raise UserError(f"no backend declares an environment named {name!r} (declared: {known})")
    return envs[name]
