"""Build the ``Space`` for a machine from the TOML files: read and check every file,
resolve symbolic bounds, and prune, with a reason, what the machine or the installed
packages cannot run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import UserError
from tuner.space.catalog import read_files
from tuner.space.environments import env_unavailable_reason
from tuner.space.requirements import module_available, unmet
from tuner.space.schema import USES, DimensionDecl
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


def _applicable(backend: str, uses: tuple[str, ...], dims: list[Dimension]) -> list[Dimension]:
    """``dims`` without those that can never be active for ``backend``: a common knob
    whose condition names other backends, or something ``backend`` does not use
    (openmp for ONNX Runtime), and then every knob whose condition rests on one
    already dropped (kmp_affinity after openmp). The condition on the backend itself
    is kept: it is always true here; one on what it uses is settled, so it goes."""
    kept: list[Dimension] = []
    for dim in dims:
        names = {d.name for d in kept}
        possible = True
        for ref, values in dim.when:
            if ref == "backend":
                possible = backend in values
            elif ref == USES:
                possible = any(value in uses for value in values)
            elif ref not in names:
                possible = False
            if not possible:
                break
        if possible:
            settled = tuple((ref, values) for ref, values in dim.when if ref != USES)
            kept.append(dim if settled == dim.when else dataclasses.replace(dim, when=settled))
    return kept


def load_space(machine: "MachineInfo", directory: Path | None = None,
               backends: list[str] | None = None, objective: str = "p50") -> Space:
    """The space of ``directory`` (default: the project's search_spaces/) on
    ``machine``, restricted to ``backends`` if given, for a study of ``objective``
    (a dimension with ``when = { objective = ... }`` is there only for those)."""
    common, files = read_files(directory)
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
        elif spec.backend is not None and not why_not and not module_available(spec.backend.module):
            why_not.append(f"python module {spec.backend.module} is not installed")
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
        uses = spec.backend.uses if spec.backend is not None else ()
        dimensions[name] = _applicable(name, uses, own + common_dims)

    if not dimensions:
        reasons = "; ".join(f"{p.choice}: {p.reason}" for p in pruned if p.dimension == "backend")
        raise UserError(f"no backend can run on this machine ({reasons or 'none selected'})")
    assert common.default_backend is not None  # read_space_file requires it
    notes = {name: files[name].note for name in dimensions if files[name].note}
    return Space(dimensions, pruned, common.default_backend, notes)
