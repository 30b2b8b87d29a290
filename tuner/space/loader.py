"""Build the ``Space`` for a machine from the TOML files: read and check every file,
resolve symbolic bounds, and prune, with a reason, what the machine or the installed
packages cannot run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import SpaceFileError, UserError
from tuner.space.environments import env_unavailable_reason
from tuner.space.requirements import unmet
from tuner.space.schema import COMMON, DimensionDecl, SpaceFile, read_space_file
from tuner.space.space import Dimension, Pruned, Space

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo


def _symbols(machine: "MachineInfo") -> dict[str, int]:
    allowed = set(machine.available_cpus)
    nodes = [n for n, cpus in machine.topology.numa_nodes.items() if allowed & set(cpus)]
    return {
        "physical_cores": machine.physical_cores_available,
        "logical_cpus": len(machine.available_cpus),
        "last_numa_node": max(len(nodes) - 1, 0),
    }


def _for_study(decls: tuple[DimensionDecl, ...], objective: str) -> list[DimensionDecl]:
    """The declarations that apply to a study of ``objective``, without that condition."""
    kept = []
    for decl in decls:
        conditions = dict(decl.when)
        wanted = conditions.pop("objective", None)
        if wanted is not None and objective not in wanted:
            continue
        kept.append(dataclasses.replace(decl, when=tuple(conditions.items())) if wanted is not None else decl)
    return kept


def read_files(directory: Path) -> tuple[SpaceFile, dict[str, SpaceFile]]:
    """common.toml and the backend files of ``directory``, checked."""
    common_path = directory / f"{COMMON}.toml"
    if not directory.is_dir():
        raise SpaceFileError(f"{directory}: search-space folder not found")
    if not common_path.is_file():
        raise SpaceFileError(f"{common_path}: missing (every search-space folder needs common.toml)")
    backend_paths = sorted(p for p in directory.glob("*.toml") if p.stem != COMMON)
    names = {p.stem for p in backend_paths}
    common = read_space_file(common_path, names)
    common_names = {d.name for d in common.dimensions}
    backends: dict[str, SpaceFile] = {}
    for path in backend_paths:
        backend = read_space_file(path, names)
        clash = sorted(common_names & {d.name for d in backend.dimensions})
        if clash:
            raise SpaceFileError(f"{path}: dimension {clash[0]!r} is already declared in {common_path.name}")
        backends[backend.name] = backend
    _check_envs(backends)
    return common, backends


def _check_envs(backends: dict[str, SpaceFile]) -> None:
    """Backends may share an environment, but then they must declare the same one."""
    seen: dict[str, SpaceFile] = {}
    for backend in backends.values():
        if backend.env is None:
            continue
        first = seen.setdefault(backend.env.name, backend)
        if first.env != backend.env:
            raise SpaceFileError(f"{backend.path}: env {backend.env.name!r} is declared differently in {first.path}")


def _resolve(decl: DimensionDecl, owner: str | None, symbols: dict[str, int],
             machine: "MachineInfo", pruned: list[Pruned]) -> tuple[Dimension | None, str | None]:
    """The dimension as this machine can run it, or (None, why) if nothing is left.
    Pruned choices are appended to ``pruned``."""
    param = decl.name if owner is None else f"{owner}.{decl.name}"
    if decl.kind == "int":
        low = symbols[decl.low] if isinstance(decl.low, str) else decl.low
        high = symbols[decl.high] if isinstance(decl.high, str) else decl.high
        if low > high:
            return None, f"{decl.name} range {low}..{high} is empty on this machine"
        default = symbols[decl.default] if isinstance(decl.default, str) else decl.default
        default = min(max(int(default), low), high)
        return Dimension(decl.name, param, decl.help, "int", (), low, high, decl.step, default, decl.when, owner), None
    kept = []
    reasons = []
    for choice in decl.choices:
        why = unmet(decl.requires[choice], machine) if choice in decl.requires else []
        if why:
            reason = "; ".join(why)
            pruned.append(Pruned(decl.name, choice, owner, reason))
            reasons.append(reason)
        else:
            kept.append(choice)
    if not kept:
        return None, f"no {decl.name} choice can run here ({'; '.join(reasons)})"
    return Dimension(decl.name, param, decl.help, "categorical", tuple(kept), 0, 0, 1, decl.default, decl.when,
                     owner), None


def _applicable(backend: str, dims: list[Dimension]) -> list[Dimension]:
    """``dims`` without those that can never be active for ``backend``: a common knob
    whose condition names other backends (openmp for ONNX Runtime), and then every
    knob whose condition rests on one already dropped (kmp_affinity after openmp).
    The condition on the backend itself is kept: it is always true here."""
    kept: list[Dimension] = []
    for dim in dims:
        names = {d.name for d in kept}
        possible = True
        for ref, values in dim.when:
            if ref == "backend":
                possible = backend in values
            elif ref not in names:
                possible = False
            if not possible:
                break
        if possible:
            kept.append(dim)
    return kept


def load_space(machine: "MachineInfo", directory: Path | None = None,
               backends: list[str] | None = None, objective: str = "p50") -> Space:
    """The space of ``directory`` (default: the project's search_spaces/) on
    ``machine``, restricted to ``backends`` if given, for a study of ``objective``
    (a dimension with ``when = { objective = ... }`` is there only for those)."""
    if directory is None:
        from tuner.paths import search_spaces_dir

        directory = search_spaces_dir()
    common, files = read_files(Path(directory))
    if backends is not None:
        unknown = [b for b in backends if b not in files]
        if unknown:
            raise UserError(f"unknown backend {unknown[0]!r} (backends: {', '.join(sorted(files))})")
    symbols = _symbols(machine)
    pruned: list[Pruned] = []

    common_dims: list[Dimension] = []
    common_failure: str | None = None
    for decl in _for_study(common.dimensions, objective):
        dim, why = _resolve(decl, None, symbols, machine, pruned)
        if dim is None:
            common_failure = why
            break
        common_dims.append(dim)

    # The default backend first: it is the baseline every study starts from.
    order = sorted(files, key=lambda name: (name != common.default_backend, name))
    if backends is not None:
        order = [name for name in order if name in backends]
    dimensions: dict[str, list[Dimension]] = {}
    for name in order:
        spec = files[name]
        why_not = unmet(spec.requires, machine)
        if spec.env is not None and not why_not:
            # Its packages live in its own environment (tuner.envs), not in this one.
            env_why = env_unavailable_reason(spec.env)
            if env_why:
                why_not.append(env_why)
        if common_failure:
            why_not.append(common_failure)
        own: list[Dimension] = []
        for decl in _for_study(spec.dimensions, objective):
            if why_not:
                break
            dim, why = _resolve(decl, name, symbols, machine, pruned)
            if dim is None:
                why_not.append(why or "")
            else:
                own.append(dim)
        if why_not:
            pruned.append(Pruned("backend", name, name, "; ".join(why_not)))
            continue
        dimensions[name] = _applicable(name, own + common_dims)

    if not dimensions:
        reasons = "; ".join(f"{p.choice}: {p.reason}" for p in pruned if p.dimension == "backend")
        raise UserError(f"no backend can run on this machine ({reasons or 'none selected'})")
    assert common.default_backend is not None  # read_space_file requires it
    notes = {name: files[name].note for name in dimensions if files[name].note}
    return Space(dimensions, pruned, common.default_backend, notes)
