"""Build the ``Space`` for a machine from the TOML files: read and check every file,
resolve symbolic bounds, and prune, with a reason, what the machine or the installed
packages cannot run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import SpaceFileError, UserError
from tuner.space.catalog import read_files
from tuner.space.environments import env_unavailable_reason
from tuner.space.requirements import module_available, unmet
from tuner.space.schema import COMMON, USES, DimensionDecl, read_space_file
from tuner.space.space import Dimension, Pruned, Space

if TYPE_CHECKING:
    from collections.abc import Sequence

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


def _resolve(
    decl: DimensionDecl, owner: str | None, symbols: dict[str, int], machine: "MachineInfo", pruned: list[Pruned]
) -> tuple[Dimension | None, str | None]:
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
    return Dimension(
        decl.name, param, decl.help, "categorical", tuple(kept), 0, 0, 1, decl.default, decl.when, owner
    ), None


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


def load_space(
    machine: "MachineInfo", directory: Path | None = None, backends: list[str] | None = None, objective: str = "p50"
) -> Space:
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


# -- `--space FILE`: the user's files merged over the shipped ones -------------------------


def load_space_with(
    machine: "MachineInfo",
    files: "Sequence[Path]",
    backends: list[str] | None = None,
    objective: str = "p50",
    directory: Path | None = None,
) -> Space:
    """``load_space`` with the user's own files (``tuner auto --space FILE``) read over
    the shipped ones. A file is in the format of search_spaces/*.toml and is named after
    the file it applies to (``onnxruntime.toml``, ``common.toml``); its tables are merged
    key by key over that file's, so ``[dimensions.precision] choices = ["fp32"]``
    restricts a dimension, more choices or a wider range extend it, a new
    ``[dimensions.<name>]`` adds one. The merged file is checked as a whole, and an error
    names the user's file, on one line like any other space file's."""
    import shutil
    import tempfile

    from tuner.space.catalog import _folder

    if not files:
        return load_space(machine, directory, backends, objective)
    shipped = _folder(directory)
    with tempfile.TemporaryDirectory(prefix="tuner-space-") as tmp:
        folder = Path(tmp)
        for path in shipped.glob("*.toml"):
            shutil.copyfile(path, folder / path.name)
        names = frozenset(p.stem for p in folder.glob("*.toml") if p.stem != COMMON)
        for file in files:
            target = folder / Path(file).name
            if not target.is_file():
                raise SpaceFileError(
                    f"{file}: no shipped search-space file {Path(file).name} to read it over; name it after one of "
                    f"{', '.join(sorted(p.name for p in shipped.glob('*.toml')))} (a new backend needs a folder of "
                    "its own: $TUNER_SPACE_DIR)"
                )
            own = _toml_table(Path(file))
            merged = _merge(_toml_table(target, target.read_text(encoding="utf-8")), own)
            _fit_restricted(merged, own)
            text = _to_toml(merged)
            read_space_file(Path(file), names, text)  # its problems, named after the user's file
            target.write_text(text, encoding="utf-8")
        return load_space(machine, folder, backends, objective)


def _toml_table(path: Path, text: str | None = None) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8") if text is None else text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceFileError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` read over ``base``: tables merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _fit_restricted(merged: dict[str, Any], own: dict[str, Any]) -> None:
    """Where the user's file gave a dimension fewer choices and said nothing of its
    default or requirements: the shipped default, if left out, becomes the first
    choice, and requirements of choices left out go with them."""
    from tuner.space.schema import _key_for

    for name, table in (own.get("dimensions") or {}).items():
        if not isinstance(table, dict) or not isinstance(table.get("choices"), list):
            continue
        dim = merged["dimensions"][name]
        choices = table["choices"]
        if "default" not in table and choices and dim.get("default") not in choices:
            dim["default"] = choices[0]
        if "requires" not in table and isinstance(dim.get("requires"), dict):
            keys = {_key_for(c) for c in choices if isinstance(c, (str, int, float, bool))}
            dim["requires"] = {k: v for k, v in dim["requires"].items() if k in keys}
    # A shipped dimension whose condition only choices left out could meet goes too
    # (quantization, once precision is fp32 only), and so on down its dependents.
    dims = merged.get("dimensions") or {}
    removed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in list(dims):
            when = dims[name].get("when") if isinstance(dims[name], dict) else None
            if name in (own.get("dimensions") or {}) or not isinstance(when, dict):
                continue
            for ref, wanted in list(when.items()):
                choices = dims[ref].get("choices") if isinstance(dims.get(ref), dict) else None
                values = wanted if isinstance(wanted, list) else [wanted]
                kept = [v for v in values if v in choices] if choices is not None else values
                if ref in removed or not kept:
                    del dims[name]
                    removed.add(name)
                    changed = True
                    break
                if len(kept) < len(values):
                    when[ref] = kept
                    changed = True


def _to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """A parsed space file written back as TOML (the values tomllib returns for it)."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # JSON's string escapes are TOML's basic-string escapes
        if isinstance(v, list):
            return "[" + ", ".join(value(item) for item in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(item)}" for k, item in v.items()) + " }"
        raise SpaceFileError(f"{prefix or 'the file'}: cannot write {v!r} back as TOML")

    scalars = [f"{json.dumps(k)} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, sub in table.items():
        if isinstance(sub, dict):
            name = f"{prefix}.{json.dumps(key)}" if prefix else json.dumps(key)
            lines.append(_to_toml(sub, name))
    return "\n".join(line for line in lines if line) + "\n"
