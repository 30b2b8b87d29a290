"""Every declared backend against the contract of tuner.backends.base: its class
satisfies the Protocol, its search-space file and its module agree, recipe() is pure,
a config it cannot run is refused before anything is built, and one that cannot run
here says why. Runs over every name the files declare, available here or not."""

from __future__ import annotations

import copy
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import backend_names, get_backend, preload_modules, unavailable_reason
from tuner.backends.base import Backend
from tuner.errors import UnsupportedConfigError
from tuner.hardware import detect
from tuner.model import ModelRef
from tuner.paths import search_spaces_dir
from tuner.space import load_space
from tuner.space.catalog import read_files
from tuner.space.environments import env_state
from tuner.space.requirements import module_available
from tuner.space.schema import SpaceFile

NAMES = backend_names()
_, FILES = read_files()
NOWHERE = ModelRef(model_id="nowhere", path="/nowhere", content_hash="0" * 64, task="embedding")


def _values(decl: Any) -> tuple[Any, ...]:
    if decl.kind == "categorical":
        return decl.choices
    # An int dimension: its low end and one step up (2 for a symbolic bound such as physical_cores).
    low = 1 if isinstance(decl.low, str) else decl.low
    high = 2 if isinstance(decl.high, str) else decl.high
    return tuple(sorted({low, min(low + decl.step, high)}))


def own_configs(spec: SpaceFile) -> list[dict[str, Any]]:
    """Every configuration of the backend's own dimensions its file allows (int ones
    reduced to two values), with threads = 2."""
    configs: list[dict[str, Any]] = [{"backend": spec.name}]
    for decl in spec.dimensions:
        grown = []
        for config in configs:
            if all(ref in config and config[ref] in values for ref, values in decl.when):
                grown += [{**config, decl.name: value} for value in _values(decl)]
            else:
                grown.append(config)
        configs = grown
    return [{**config, "threads": 2} for config in configs]


def test_every_backend_file_names_its_module() -> None:
    assert sorted(NAMES) == sorted(FILES)
    assert NAMES[0] == read_files()[0].default_backend


@pytest.mark.parametrize("name", NAMES)
def test_the_class_satisfies_the_protocol(name: str) -> None:
    backend = get_backend(name)
    assert isinstance(backend, Backend)
    assert backend.name == name  # the config's "backend" value is its file's name
    for method in ("recipe", "prepare", "load", "threads_in_use"):
        want = list(inspect.signature(getattr(Backend, method)).parameters)[1:]
        assert list(inspect.signature(getattr(backend, method)).parameters) == want, method
    assert type(get_backend(name)) is type(backend) and get_backend(name) is not backend


@pytest.mark.parametrize("name", NAMES)
def test_its_file_and_its_module_agree(name: str) -> None:
    spec = FILES[name]
    decl = spec.backend
    assert decl is not None
    assert type(get_backend(name)).__module__ == decl.module
    assert all(module_available(module) for module in decl.preload)
    assert bool(preload_modules(name, "/m")) == decl.fork_served
    for config in own_configs(spec):  # every value its file offers, its module takes
        get_backend(name).recipe(config)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_is_pure(name: str) -> None:
    backend = get_backend(name)
    for config in own_configs(FILES[name]):
        before = copy.deepcopy(config)
        recipe = backend.recipe(config)
        assert config == before  # not changed
        assert recipe is None or isinstance(recipe, dict)
        json.dumps(recipe)  # a cache key is made of it
        assert get_backend(name).recipe(config) == recipe
        # Runtime knobs stay out of the recipe: trials differing in them share the artifact.
        assert backend.recipe({**config, "threads": 1, "binding": "taskset", "allocator": "jemalloc"}) == recipe


@pytest.mark.parametrize("name", NAMES)
def test_a_config_it_cannot_run_is_refused_before_anything_is_built(name: str, tmp_path: Path) -> None:
    backend = get_backend(name)
    default = own_configs(FILES[name])[0]
    cache = ArtifactCache(tmp_path / "artifacts")
    for bad in ({**default, "precision": "fp64"}, {k: v for k, v in default.items() if k != "threads"}):
        with pytest.raises(UnsupportedConfigError):
            backend.prepare(NOWHERE, bad, cache)
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("name", NAMES)
def test_unavailable_ones_say_why(name: str) -> None:
    spec = FILES[name]
    reason = unavailable_reason(name)
    if reason is not None:
        assert reason.strip() and "\n" not in reason
    if spec.env is not None:
        assert (reason is None) == (env_state(spec.env).status == "ready")
        if reason is not None:
            assert f"tuner env create {spec.env.name}" in reason
    else:
        assert (reason is None) == all(module_available(m) for m in spec.requires.modules)


def test_a_backend_whose_code_is_missing_is_named_and_pruned(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spaces = tmp_path / "spaces"
    shutil.copytree(search_spaces_dir(), spaces)
    (spaces / "ghost.toml").write_text(
        'format = 1\n[backend]\nmodule = "tuner_no_such_module:Ghost"\n'
        '[dimensions.precision]\nhelp = "p"\nchoices = ["fp32"]\ndefault = "fp32"\n'
    )
    monkeypatch.setenv("TUNER_SPACE_DIR", str(spaces))
    assert "ghost" in backend_names()
    assert unavailable_reason("ghost") == "backend 'ghost' needs tuner_no_such_module, which is not installed"
    space = load_space(detect())
    assert "ghost" not in space.backends
    [pruned] = [p for p in space.pruned if p.choice == "ghost"]
    assert pruned.reason == "python module tuner_no_such_module is not installed"
