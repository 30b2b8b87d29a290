"""tuner.space.catalog: the files' declarations, parsed once per content, and what the
rest of the tuner derives from their [backend] tables (the OpenMP knobs, the libraries
of the fingerprint, the registry's order)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuner.envs import env_for_backend
from tuner.hardware import detect
from tuner.hardware import versions as hardware_versions
from tuner.paths import search_spaces_dir
from tuner.space import load_space
from tuner.space.catalog import backend_file, declared_backends, declared_libraries, read_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


@pytest.fixture()
def spaces(tmp_path: Path) -> Path:
    directory = tmp_path / "spaces"
    shutil.copytree(search_spaces_dir(), directory)
    return directory


def test_each_file_is_parsed_once_per_content(spaces: Path) -> None:
    common, files = read_files(spaces)
    again_common, again = read_files(spaces)
    assert again_common is common and all(again[name] is files[name] for name in files)
    assert backend_file("torch", spaces) is files["torch"]  # one file, the same parse
    assert env_for_backend("ipex", spaces) is files["ipex"].env
    path = spaces / "torch.toml"
    path.write_text(path.read_text().replace('help = "fp32;', 'help = "FP32;'))
    changed = read_files(spaces)[1]
    assert changed["torch"] is not files["torch"] and changed["torch"].dimensions[0].help.startswith("FP32;")
    assert changed["onnxruntime"] is files["onnxruntime"]


def test_the_env_var_chooses_the_folder(spaces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (spaces / "torch_compile.toml").unlink()
    monkeypatch.setenv("TUNER_SPACE_DIR", str(spaces))
    assert search_spaces_dir() == spaces
    assert "torch_compile" not in declared_backends() and "torch_compile" not in load_space(detect()).backends


def test_registry_order() -> None:
    """The stock default, the backends of this interpreter, then those in their own environment."""
    common, files = read_files()
    names = list(declared_backends())
    rest = names[1:]
    assert names[0] == common.default_backend
    assert rest == sorted(n for n in rest if files[n].env is None) + sorted(n for n in rest if files[n].env)


def test_openmp_knobs_follow_what_a_backend_uses(spaces: Path) -> None:
    space = load_space(detect(str(FIXTURES / "sapphire_rapids")), spaces)
    uses = {name: decl.uses for name, decl in declared_backends(spaces).items()}
    for backend in space.backends:
        dims = {d.name: d for d in space.dimensions(backend)}
        assert ("openmp" in dims) == ("openmp" in uses[backend]), backend
        if "openmp" in dims:
            assert dims["openmp"].when == ()  # settled for this backend: no condition left
    # A backend that starts using OpenMP gets the knobs with its file alone.
    path = spaces / "onnxruntime.toml"
    path.write_text(path.read_text().replace('module = "tuner.backends.onnxruntime:OnnxRuntimeBackend"',
                                             'module = "tuner.backends.onnxruntime:OnnxRuntimeBackend"\n'
                                             'uses = ["openmp"]'))
    space = load_space(detect(str(FIXTURES / "sapphire_rapids")), spaces, backends=["onnxruntime"])
    assert {"openmp", "omp_proc_bind"} <= {d.name for d in space.dimensions("onnxruntime")}


def test_the_fingerprint_reads_the_libraries_the_backends_declare(spaces: Path) -> None:
    """hardware sits below space and reads the [backend] libraries itself: both
    readers agree, and a new backend's library enters the fingerprint with its file."""
    by_name = {lib.name: lib for lib in declared_libraries()}
    assert {lib.name: lib for lib in hardware_versions.declared_libraries()} == by_name
    assert by_name["onnxruntime"].distributions[:3] == ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")
    assert by_name["intel_extension_for_pytorch"].distributions == ("intel-extension-for-pytorch",)
    versions = hardware_versions.library_versions()
    assert set(versions) == {"python", "optuna", *by_name}
    path = spaces / "torch.toml"
    path.write_text(path.read_text().replace('libraries = ["torch", "transformers"]',
                                             'libraries = ["torch", "transformers", "numpy"]'))
    import numpy

    libraries = hardware_versions.declared_libraries(spaces)
    assert hardware_versions.library_versions(libraries)["numpy"] == numpy.__version__
