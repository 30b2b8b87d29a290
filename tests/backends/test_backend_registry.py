"""tuner.backends: the registry is lazy and names what it cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tuner.backends import backend_names, get_backend, unavailable_reason
from tuner.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def test_names_and_lookup() -> None:
    assert backend_names()[:2] == ["torch", "onnxruntime"]
    for name in backend_names():
        assert get_backend(name).name == name
    for name in ("torch", "onnxruntime", "torchscript", "torch_compile"):
        assert unavailable_reason(name) is None  # these run in this environment


def test_unknown_backend_is_one_clear_line() -> None:
    with pytest.raises(UserError, match=r"unknown backend 'tensorflow'; the backends are: torch, onnxruntime, "):
        get_backend("tensorflow")


def test_importing_the_registry_imports_no_framework() -> None:
    code = (
        "import sys, tuner.backends as b; b.backend_names(); b.unavailable_reason('onnxruntime'); "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
