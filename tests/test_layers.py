"""The packages of tuner/ import one way only (docs/architecture.md, "Layers").

Every import statement counts, including those inside functions (lazy imports hide
a cycle from Python, not from a reader), and those under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tuner"

# Bottom to top. A module may import its own unit and the units of lower layers;
# units that share a layer may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "vocabulary", "_version", "_metadata"),
    ("hardware",),
    ("hub",),
    ("model",),
    ("space",),
    ("envs",),
    ("artifacts",),
    ("backends",),
    ("trial",),
    ("store",),
    ("search",),
    ("nightly",),
    ("deploy",),
    ("service",),
    ("cli",),
    ("__init__",),  # the public façade, tuner/__init__.py
    ("__main__",),  # python -m tuner
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str, package: Path = PACKAGE) -> str:
    """``tuner.search.study`` -> ``search``; ``tuner`` itself, or a name the façade
    defines (``from tuner import __version__``) -> ``__init__``."""
    parts = module.split(".")
    assert parts[0] == "tuner", module
    if len(parts) == 1:
        return "__init__"
    if (package / parts[1]).is_dir() or (package / f"{parts[1]}.py").is_file():
        return parts[1]
    return "__init__"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) for every tuner module ``path`` imports, wherever the statement is."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, package_dir).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from tuner import paths` imports tuner.paths, not the façade; a name
            # that is not a module only lengthens a path inside the same unit.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "tuner" or name.startswith("tuner.")]


def edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for imports between different units."""
    result = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path))
        for line, name in imported(path):
            target = unit_of(name)
            if target != source:
                result.append((source, target, f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"))
    return result


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(LAYER_OF) == set(), "add the new package to LAYERS and docs/architecture.md"


def test_imports_point_down() -> None:
    upward = [where for source, target, where in edges() if LAYER_OF[target] >= LAYER_OF[source]]
    assert upward == []


def test_no_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(unit for unit in graph if reaches(unit, unit, {unit}))
    assert cycles == []


@pytest.mark.parametrize("source", ["tuner/search/x.py", "tuner/search/__init__.py"])
def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path, source: str) -> None:
    """The tests above can fail: an upward import inside a function is found, and a
    relative import resolves to the module it names."""
    fake = tmp_path / source
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from tuner.cli import main\n    from . import objective\n")
    names = [name for _, name in imported(fake, tmp_path / "tuner")]
    assert names == ["tuner.cli.main", "tuner.search.objective"]
    assert LAYER_OF[unit_of("tuner.cli")] > LAYER_OF[unit_of(module_name(fake, tmp_path / "tuner"))]
