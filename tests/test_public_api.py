"""The public façade (tuner/__init__.py): what it exports, documented and typed."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import tuner

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [n for n in tuner.__all__ if n != "__version__"])
def test_every_export_resolves_and_is_documented(name: str) -> None:
    obj = getattr(tuner, name)
    assert inspect.getdoc(obj), f"tuner.{name} has no docstring"


@pytest.mark.parametrize("name", [n for n in tuner.__all__ if callable(getattr(tuner, n, None))
                                  and inspect.isfunction(getattr(tuner, n))])
def test_public_functions_are_fully_annotated(name: str) -> None:
    function = getattr(tuner, name)
    hints = typing.get_type_hints(function)
    params = [p for p in inspect.signature(function).parameters if p not in ("self",)]
    assert set(params) <= set(hints), f"tuner.{name}: unannotated {sorted(set(params) - set(hints))}"
    assert "return" in hints


def test_errors_and_warnings_are_exported() -> None:
    assert issubclass(tuner.UserError, tuner.TunerError)
    for error in (tuner.ModelNotFoundError, tuner.StoreError, tuner.LockedError, tuner.SpaceFileError):
        assert issubclass(error, tuner.UserError)
    assert issubclass(tuner.RuntimeSettingsWarning, Warning)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tuner.nope  # noqa: B018


def test_version_is_defined_once() -> None:
    from importlib import metadata

    assert tuner.__version__ == metadata.version("tuner")
    assert 'version = "' not in (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]


def test_import_is_cheap() -> None:
    code = ("import sys, tuner; heavy = [m for m in ('torch', 'sqlalchemy', 'numpy', 'optuna', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
