"""Read and check one search-space TOML file (the format is docs/search-space.md).

Everything a file can get wrong is caught here, before any machine is looked at, and
raised as ``SpaceFileError`` with the file's path and the problem on one line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import SpaceFileError
from tuner.hardware.cpu import KNOWN_ISA
from tuner.hardware.libraries import LIBRARIES
from tuner.hardware.versions import Library, toml_document
from tuner.space.requirements import Requirements
from tuner.vocabulary import OBJECTIVES

FORMAT = 1
COMMON = "common"  # common.toml: the knobs every backend shares

Scalar = str | int | float | bool

# Symbolic int bounds, resolved against the machine when the space is loaded.
SYMBOLS = {
    "physical_cores": "physical cores among the CPUs this process may use",
    "logical_cpus": "logical CPUs this process may use",
    "last_numa_node": "index of the last NUMA node with CPUs this process may use (0 on one node)",
}
# Conditions on the study rather than on the config: resolved when the space is
# loaded for an objective, so a dimension that does not apply is not there at all.
STUDY_CONDITIONS: dict[str, tuple[Scalar, ...]] = {"objective": tuple(OBJECTIVES)}
# What a backend may declare it uses ([backend] uses), and a knob of common.toml may be
# conditioned on (when = { uses = "openmp" }): each is something the trial's launcher
# knows how to set (tuner.trial.knobs).
CAPABILITIES = {
    "openmp": "its compute runs on an OpenMP runtime (libgomp, or libiomp5 preloaded), so the openmp knobs apply",
}
USES = "uses"  # the condition on what the backend uses

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FILE_KEYS = {"format", "help", "requires", "dimensions"}
_COMMON_KEYS = _FILE_KEYS | {"default_backend"}
# A backend file may also carry a note for `tuner space` and the environment it runs in.
_BACKEND_KEYS = _FILE_KEYS | {"note", "env", "backend"}
_BACKEND_TABLE_KEYS = {"module", "fork_served", "preload", "uses", "libraries"}
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ENV_KEYS = {"name", "help", "packages", "imports"}
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_DIMENSION_KEYS = {"help", "type", "choices", "low", "high", "step", "default", "when", "requires"}
_REQUIREMENT_KEYS = {"isa_any", "isa_none", "executables", "modules", "gpu", "libraries"}


@dataclass(frozen=True)
class DimensionDecl:
    """A dimension as written in the file, before the machine resolves it."""

    name: str
    help: str
    kind: str  # "categorical" or "int"
    choices: tuple[Scalar, ...] = ()
    low: int | str = 0
    high: int | str = 0
    step: int = 1
    default: Scalar = ""
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()  # all must hold
    requires: dict[Scalar, Requirements] = field(default_factory=dict)  # keyed by choice


@dataclass(frozen=True)
class EnvDecl:
    """A backend's own Python environment (``[env]``), built by ``tuner env create``."""

    name: str
    help: str
    packages: tuple[str, ...]  # pip requirement strings
    imports: tuple[str, ...] = ()  # modules that must import in it once built


@dataclass(frozen=True)
class BackendDecl:
    """A backend file's ``[backend]`` table: where its code is and what it depends on."""

    module: str  # the module that defines it ("tuner.backends.onnxruntime")
    class_name: str  # its Backend class there ("OnnxRuntimeBackend")
    fork_served: bool = False  # trials forked from a fork server that did the imports once
    preload: tuple[str, ...] = ()  # what that server imports (fork_served only)
    uses: tuple[str, ...] = ()  # CAPABILITIES it has ("openmp")
    libraries: tuple[Library, ...] = ()  # whose versions key its artifacts and enter the fingerprint


@dataclass(frozen=True)
class SpaceFile:
    name: str  # file stem: a backend's name, or "common"
    path: Path
    help: str
    requires: Requirements
    dimensions: tuple[DimensionDecl, ...]
    default_backend: str | None = None  # common.toml only
    note: str = ""  # shown beside the backend by `tuner space`
    env: EnvDecl | None = None  # trials run with this environment's interpreter
    backend: BackendDecl | None = None  # where the backend's code is ([backend]); None: not declared


class _Checker:
    """Helpers that raise SpaceFileError naming ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, problem: str) -> SpaceFileError:
        return SpaceFileError(f"{self.path}: {problem}")

    def unknown_keys(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise self.fail(f"unknown key {extra[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where} must be a string, got {_toml(value)}")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{where} must be a list of strings, got {_toml(value)}")
        return tuple(value)


def _toml(value: Any) -> str:
    """A value as it would be written in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _same_kind(a: object, b: object) -> bool:
    # bool is a subclass of int in Python; in a space file true and 1 are not alike.
    return type(a) is type(b) or (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    )


def _key_for(choice: Scalar) -> str:
    """How a choice is spelled as a key under ``requires``."""
    return _toml(choice).strip('"')


def _requirements(check: _Checker, table: Any, where: str) -> Requirements:
    if not isinstance(table, dict):
        raise check.fail(f"{where} must be a table, got {_toml(table)}")
    check.unknown_keys(table, _REQUIREMENT_KEYS, where)
    isa = {key: check.strings(table.get(key, []), f"{where}.{key}") for key in ("isa_any", "isa_none")}
    for key, names in isa.items():
        for name in names:
            if name not in KNOWN_ISA:
                raise check.fail(f"{where}.{key}: unknown ISA feature {name!r} (known: {', '.join(sorted(KNOWN_ISA))})")
    gpu = table.get("gpu", False)
    if not isinstance(gpu, bool):
        raise check.fail(f"{where}.gpu must be true or false, got {_toml(gpu)}")
    libraries = check.strings(table.get("libraries", []), f"{where}.libraries")
    for name in libraries:
        if name not in LIBRARIES:
            raise check.fail(f"{where}.libraries: unknown library {name!r} (known: {', '.join(LIBRARIES)})")
    return Requirements(
        isa_any=isa["isa_any"],
        isa_none=isa["isa_none"],
        executables=check.strings(table.get("executables", []), f"{where}.executables"),
        modules=check.strings(table.get("modules", []), f"{where}.modules"),
        gpu=gpu,
        libraries=libraries,
    )


def _bound(check: _Checker, value: Any, where: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value in SYMBOLS:
        return value
    raise check.fail(f"{where} must be an integer or one of {', '.join(SYMBOLS)}, got {_toml(value)}")


def _dimension(
    check: _Checker,
    name: str,
    table: Any,
    earlier: dict[str, DimensionDecl],
    later: set[str],
    backends: set[str],
    is_common: bool,
) -> DimensionDecl:
    where = f"dimension {name!r}"
    if not _NAME.match(name) or name in ("backend", USES):
        raise check.fail(f"{where}: a name is lower-case letters, digits and _, and not 'backend' or '{USES}'")
    if not isinstance(table, dict):
        raise check.fail(f"{where} must be a table, got {_toml(table)}")
    check.unknown_keys(table, _DIMENSION_KEYS, where)
    if "help" not in table:
        raise check.fail(f'{where} has no help text (help = "...")')
    help_text = check.string(table["help"], f"{where}.help")
    kind = table.get("type", "categorical")
    if kind not in ("categorical", "int"):
        raise check.fail(f'{where}.type must be "categorical" or "int", got {_toml(kind)}')
    if "default" not in table:
        raise check.fail(f"{where} has no default (the backend's stock choice)")
    default = table["default"]

    choices: tuple[Scalar, ...] = ()
    low: int | str = 0
    high: int | str = 0
    step = 1
    requires: dict[Scalar, Requirements] = {}
    if kind == "int":
        for key in ("choices", "requires"):
            if key in table:
                raise check.fail(f'{where}: {key!r} does not apply to type = "int" (use low/high/step)')
        for key in ("low", "high"):
            if key not in table:
                raise check.fail(f'{where}: type = "int" needs {key!r}')
        low = _bound(check, table["low"], f"{where}.low")
        high = _bound(check, table["high"], f"{where}.high")
        step = table.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise check.fail(f"{where}.step must be an integer >= 1, got {_toml(step)}")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            raise check.fail(f"{where}: low {low} is above high {high}")
        if not (isinstance(default, str) and default in SYMBOLS) and (
            not isinstance(default, int) or isinstance(default, bool)
        ):
            raise check.fail(f"{where}.default must be an integer or one of {', '.join(SYMBOLS)}, got {_toml(default)}")
    else:
        for key in ("low", "high", "step"):
            if key in table:
                raise check.fail(f'{where}: {key!r} needs type = "int"')
        raw = table.get("choices")
        if not isinstance(raw, list):
            raise check.fail(f'{where} needs choices = [...] (or type = "int" with low/high)')
        if not raw:
            raise check.fail(f"{where} has empty choices")
        if not all(isinstance(c, (str, int, float, bool)) for c in raw):
            raise check.fail(f"{where}.choices must be strings, numbers or booleans, got {_toml(raw)}")
        if not all(_same_kind(c, raw[0]) for c in raw):
            raise check.fail(f"{where}.choices mix types: {_toml(raw)}")
        if len({_key_for(c) for c in raw}) != len(raw):
            raise check.fail(f"{where}.choices has duplicates: {_toml(raw)}")
        choices = tuple(raw)
        if not any(_same_kind(default, c) and default == c for c in choices):
            raise check.fail(f"{where}.default {_toml(default)} is not one of its choices {_toml(raw)}")
        req_table = table.get("requires", {})
        if not isinstance(req_table, dict):
            raise check.fail(f"{where}.requires must be a table of choices, got {_toml(req_table)}")
        by_key = {_key_for(c): c for c in choices}
        for key, sub in req_table.items():
            if key not in by_key:
                raise check.fail(f"{where}.requires.{key}: {key!r} is not one of its choices {_toml(raw)}")
            requires[by_key[key]] = _requirements(check, sub, f"{where}.requires.{key}")

    when = _when(check, table.get("when", {}), where, earlier, later, backends, is_common)
    return DimensionDecl(name, help_text, kind, choices, low, high, step, default, when, requires)


def _when(
    check: _Checker,
    table: Any,
    where: str,
    earlier: dict[str, DimensionDecl],
    later: set[str],
    backends: set[str],
    is_common: bool,
) -> tuple[tuple[str, tuple[Scalar, ...]], ...]:
    if not isinstance(table, dict):
        raise check.fail(f'{where}.when must be a table like {{ precision = "int8" }}, got {_toml(table)}')
    conditions = []
    for ref, wanted in table.items():
        values = tuple(wanted) if isinstance(wanted, list) else (wanted,)
        if not values:
            raise check.fail(f"{where}.when.{ref} lists no values")
        if ref == "backend":
            allowed: tuple[Scalar, ...] = tuple(sorted(backends))
        elif ref == USES:
            if not is_common:
                raise check.fail(f"{where}.when.{USES}: only common.toml's knobs depend on what a backend uses")
            allowed = tuple(CAPABILITIES)
        elif ref in STUDY_CONDITIONS:
            allowed = STUDY_CONDITIONS[ref]
        elif ref in earlier:
            target = earlier[ref]
            if target.kind != "categorical":
                raise check.fail(f"{where}.when refers to {ref!r}, an int dimension; only choices can be conditions")
            allowed = target.choices
        elif ref in later:
            # Sampling is define-by-run in file order: a later value is not known yet.
            raise check.fail(f"{where}.when refers to {ref!r}, which is declared below it; move {ref!r} above")
        else:
            raise check.fail(
                f"{where}.when refers to unknown dimension {ref!r} "
                f"(a condition names 'backend', '{USES}' or a dimension declared above it in this file)"
            )
        for value in values:
            if not any(_same_kind(value, a) and value == a for a in allowed):
                raise check.fail(f"{where}.when.{ref}: {_toml(value)} is not one of {_toml(list(allowed))}")
        conditions.append((ref, values))
    return tuple(conditions)


def read_space_file(path: Path, backends: set[str] | frozenset[str], text: str | None = None) -> SpaceFile:
    """Parse and check one file; ``backends`` are the backend names of the folder
    (for ``default_backend`` and ``when = { backend = ... }``); ``text``: the file's
    content when the caller has read it already."""
    check = _Checker(path)
    try:
        # Parsed once per content (detect() has read these files already); read only.
        data = toml_document(path.read_text(encoding="utf-8") if text is None else text)
    except tomllib.TOMLDecodeError as exc:
        raise check.fail(f"invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise check.fail(f"cannot read: {exc}") from None
    name = path.stem
    is_common = name == COMMON
    check.unknown_keys(data, _COMMON_KEYS if is_common else _BACKEND_KEYS, "the file")
    if data.get("format") != FORMAT:
        raise check.fail(f"format = {_toml(data.get('format'))} is not supported (this tuner reads format = {FORMAT})")
    help_text = check.string(data.get("help", ""), "help")
    requires = _requirements(check, data.get("requires", {}), "requires")
    default_backend = None
    if is_common:
        if "default_backend" not in data:
            raise check.fail('needs default_backend = "<backend>" (the stock default to compare against)')
        default_backend = check.string(data["default_backend"], "default_backend")
        if default_backend not in backends:
            raise check.fail(
                f"default_backend {default_backend!r} has no {default_backend}.toml beside it "
                f"(backends: {', '.join(sorted(backends)) or 'none'})"
            )
    elif not _NAME.match(name):
        raise check.fail("a backend file is named <backend>.toml with a lower-case name")
    dimensions_table = data.get("dimensions", {})
    if not isinstance(dimensions_table, dict):
        raise check.fail(f"dimensions must be a table of [dimensions.<name>] tables, got {_toml(dimensions_table)}")
    declared: dict[str, DimensionDecl] = {}
    for dim_name, table in dimensions_table.items():
        later = set(dimensions_table) - set(declared) - {dim_name}
        declared[dim_name] = _dimension(check, dim_name, table, declared, later, set(backends), is_common)
    note = check.string(data.get("note", ""), "note")
    env = _env(check, data["env"]) if "env" in data else None
    backend = _backend(check, data["backend"]) if "backend" in data else None
    return SpaceFile(name, path, help_text, requires, tuple(declared.values()), default_backend, note, env, backend)


def _module_name(check: _Checker, value: Any, where: str) -> str:
    text = check.string(value, where)
    if not _MODULE.match(text):
        raise check.fail(f"{where}: {text!r} is not a dotted module name")
    return text


def _backend(check: _Checker, table: Any) -> BackendDecl:
    if not isinstance(table, dict):
        raise check.fail(
            f'backend must be a table ([backend] with module = "package.module:Class"), got {_toml(table)}'
        )
    check.unknown_keys(table, _BACKEND_TABLE_KEYS, "backend")
    if "module" not in table:
        raise check.fail('backend needs module = "package.module:Class" (where the Backend class is)')
    module, _, class_name = check.string(table["module"], "backend.module").partition(":")
    if not _MODULE.match(module) or not class_name.isidentifier():
        raise check.fail(f'backend.module must be "package.module:Class", got {_toml(table["module"])}')
    fork_served = table.get("fork_served", False)
    if not isinstance(fork_served, bool):
        raise check.fail(f"backend.fork_served must be true or false, got {_toml(fork_served)}")
    preload = check.strings(table.get("preload", []), "backend.preload")
    if preload and not fork_served:
        raise check.fail("backend.preload applies to a fork-served backend only (fork_served = true)")
    for name in preload:
        _module_name(check, name, "backend.preload")
    uses = check.strings(table.get("uses", []), "backend.uses")
    for name in uses:
        if name not in CAPABILITIES:
            raise check.fail(f"backend.uses: unknown capability {name!r} (known: {', '.join(CAPABILITIES)})")
    entries = table.get("libraries", [])
    if not isinstance(entries, list):
        raise check.fail(f"backend.libraries must be a list of distributions, got {_toml(entries)}")
    libraries: dict[str, Library] = {}
    for entry in entries:
        try:
            library = Library.parse(entry)
        except ValueError as exc:
            raise check.fail(f"backend.libraries: {exc}, got {_toml(entry)}") from None
        if library.name in libraries:
            raise check.fail(f"backend.libraries names {library.name!r} twice")
        libraries[library.name] = library
    return BackendDecl(
        module,
        class_name,
        fork_served,
        preload or ((module,) if fork_served else ()),
        tuple(dict.fromkeys(uses)),
        tuple(libraries.values()),
    )


def _env(check: _Checker, table: Any) -> EnvDecl:
    if not isinstance(table, dict):
        raise check.fail(f"env must be a table ([env] with name and packages), got {_toml(table)}")
    check.unknown_keys(table, _ENV_KEYS, "env")
    name = check.string(table.get("name", ""), "env.name")
    if not _ENV_NAME.match(name):
        raise check.fail(f"env.name {name!r} must be lower-case letters, digits, - and _")
    packages = check.strings(table.get("packages", []), "env.packages")
    if not packages:
        raise check.fail("env.packages lists no packages (pip requirement strings)")
    return EnvDecl(
        name,
        check.string(table.get("help", ""), "env.help"),
        packages,
        check.strings(table.get("imports", []), "env.imports"),
    )
