"""tuner.backends: the registry is lazy and names what it cannot run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.backends import backend_names, get_backend, preload_modules, unavailable_reason
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


def test_fork_serving_comes_from_the_files() -> None:
    """search_spaces/<name>.toml's [backend] fork_served and preload, nothing else."""
    shared = ["tuner.backends._torch_common", "model:/m"]
    for name in ("torch", "torchscript", "torch_compile", "torch_cuda"):
        assert preload_modules(name, "/m") == shared  # one server serves the whole family
    for name in ("onnxruntime", "openvino", "ipex", "onnxruntime_cuda", "onnxruntime_openvino"):
        assert preload_modules(name, "/m") == []
    assert preload_modules("tensorflow", "/m") == []


def test_a_file_without_a_backend_table_is_no_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spaces = tmp_path / "spaces"
    shutil.copytree(REPO / "search_spaces", spaces)
    (spaces / "bare.toml").write_text('format = 1\n[dimensions.precision]\nhelp = "p"\nchoices = ["fp32"]\n'
                                      'default = "fp32"\n')
    monkeypatch.setenv("TUNER_SPACE_DIR", str(spaces))
    assert "bare" not in backend_names()
    with pytest.raises(UserError, match=r"unknown backend 'bare': .*bare.toml has no \[backend\] table"):
        get_backend("bare")
