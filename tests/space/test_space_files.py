"""Malformed space files: each problem is a SpaceFileError naming the file, on one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuner.errors import SpaceFileError, UserError
from tuner.hardware import detect
from tuner.paths import search_spaces_dir
from tuner.space import load_space

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


@pytest.fixture()
def spaces(tmp_path: Path) -> Path:
    directory = tmp_path / "spaces"
    shutil.copytree(search_spaces_dir(), directory)
    return directory


def _load(directory: Path) -> None:
    load_space(detect(str(FIXTURES / "zen4")), directory)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _fails(directory: Path, file: str, *fragments: str) -> None:
    with pytest.raises(SpaceFileError) as info:
        _load(directory)
    message = str(info.value)
    assert file in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, UserError)  # the CLI prints it on one line, exit 2


def test_real_files_load(spaces: Path) -> None:
    _load(spaces)


def test_bad_toml(spaces: Path) -> None:
    _replace(spaces / "torch.toml", 'default = "fp32"', 'default = "fp32')
    _fails(spaces, "torch.toml", "invalid TOML", "line")


def test_unknown_top_level_key(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", "format = 1", "format = 1\nproviders = []")
    _fails(spaces, "onnxruntime.toml", "unknown key 'providers'")


def test_unknown_dimension_key(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'default = "unfused"', 'default = "unfused"\ndefualt = "fused"')
    _fails(spaces, "onnxruntime.toml", "unknown key 'defualt' in dimension 'graph'")


def test_unknown_requirement_key(spaces: Path) -> None:
    _replace(spaces / "common.toml", 'executables = ["numactl"]', 'executable = ["numactl"]')
    _fails(spaces, "common.toml", "unknown key 'executable'")


def test_when_on_unknown_dimension(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'when = { precision = "int8" }', 'when = { precison = "int8" }')
    _fails(spaces, "onnxruntime.toml", "unknown dimension 'precison'")


def test_when_on_a_later_dimension(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'default = "unfused"', 'default = "unfused"\nwhen = { reduce_range = true }')
    _fails(spaces, "onnxruntime.toml", "refers to 'reduce_range', which is declared below it")


def test_when_value_not_a_choice(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'when = { precision = "int8" }', 'when = { precision = "int 8" }')
    _fails(spaces, "onnxruntime.toml", '"int 8" is not one of ["fp32", "int8"]')


def test_empty_choices(spaces: Path) -> None:
    _replace(spaces / "torch.toml", 'choices = ["fp32", "bf16", "int8"]', "choices = []")
    _fails(spaces, "torch.toml", "empty choices")


def test_wrong_types(spaces: Path) -> None:
    _replace(spaces / "common.toml", "low = 1", "low = 1.5")
    _fails(spaces, "common.toml", "'threads'.low must be an integer")


def test_mixed_choice_types(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", "choices = [false, true]", 'choices = [false, "yes"]')
    _fails(spaces, "onnxruntime.toml", "choices mix types")


def test_help_must_be_text(spaces: Path) -> None:
    _replace(spaces / "torch.toml", 'help = "fp32;', 'help = 3\n# "')
    _fails(spaces, "torch.toml", "'precision'.help must be a string, got 3")


def test_default_not_a_choice(spaces: Path) -> None:
    _replace(spaces / "torch.toml", 'default = "fp32"', 'default = "fp64"')
    _fails(spaces, "torch.toml", 'default "fp64" is not one of its choices')


def test_missing_default(spaces: Path) -> None:
    _replace(spaces / "common.toml", 'default = "none"\n', "")
    _fails(spaces, "common.toml", "'binding' has no default")


def test_unknown_isa_feature(spaces: Path) -> None:
    _replace(spaces / "torch.toml", '"avx512_bf16", "amx_bf16"', '"avx512bf16", "amx_bf16"')
    _fails(spaces, "torch.toml", "unknown ISA feature 'avx512bf16'")


def test_unknown_isa_feature_in_isa_none(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'isa_none = ["avx512_vnni",', 'isa_none = ["avx512vnni",')
    _fails(spaces, "onnxruntime.toml", "isa_none: unknown ISA feature 'avx512vnni'")


def test_requires_for_a_missing_choice(spaces: Path) -> None:
    _replace(spaces / "common.toml", "[dimensions.binding.requires.numactl]", "[dimensions.binding.requires.numa]")
    _fails(spaces, "common.toml", "'numa' is not one of its choices")


def test_unknown_symbol(spaces: Path) -> None:
    _replace(spaces / "common.toml", 'high = "physical_cores"', 'high = "cores"')
    _fails(spaces, "common.toml", "physical_cores, logical_cpus")


def test_unsupported_format(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", "format = 1", "format = 2")
    _fails(spaces, "onnxruntime.toml", "format = 2 is not supported")


def test_duplicate_of_a_common_dimension(spaces: Path) -> None:
    (spaces / "onnxruntime.toml").write_text(
        (spaces / "onnxruntime.toml").read_text()
        + '\n[dimensions.threads]\nhelp = "x"\ntype = "int"\nlow = 1\nhigh = 4\ndefault = 1\n'
    )
    _fails(spaces, "onnxruntime.toml", "'threads' is already declared in common.toml")


def test_unknown_default_backend(spaces: Path) -> None:
    _replace(spaces / "common.toml", 'default_backend = "torch"', 'default_backend = "pytorch"')
    _fails(spaces, "common.toml", "default_backend 'pytorch' has no pytorch.toml")


def test_missing_common(spaces: Path) -> None:
    (spaces / "common.toml").unlink()
    _fails(spaces, "common.toml", "missing")


# --- the [backend] table ----------------------------------------------------------------

ORT_MODULE = 'module = "tuner.backends.onnxruntime:OnnxRuntimeBackend"'


def test_unknown_backend_key(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", ORT_MODULE, ORT_MODULE + "\nfork_serverd = true")
    _fails(spaces, "onnxruntime.toml", "unknown key 'fork_serverd' in backend")


@pytest.mark.parametrize("module", ['"tuner.backends.onnxruntime"', '"tuner backends:X"', '"a.b:"', "3"])
def test_module_is_module_colon_class(spaces: Path, module: str) -> None:
    _replace(spaces / "onnxruntime.toml", ORT_MODULE, f"module = {module}")
    _fails(spaces, "onnxruntime.toml", "backend.module must be")


def test_backend_table_needs_its_module(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", ORT_MODULE + "\n", "")
    _fails(spaces, "onnxruntime.toml", "backend needs module = ")


def test_unknown_capability(spaces: Path) -> None:
    _replace(spaces / "torch.toml", 'uses = ["openmp"]', 'uses = ["opnemp"]')
    _fails(spaces, "torch.toml", "backend.uses: unknown capability 'opnemp' (known: openmp)")


def test_preload_needs_fork_serving(spaces: Path) -> None:
    _replace(spaces / "torch.toml", "fork_served = true", "fork_served = false")
    _fails(spaces, "torch.toml", "backend.preload applies to a fork-served backend only")


def test_fork_served_is_a_boolean(spaces: Path) -> None:
    _replace(spaces / "torch.toml", "fork_served = true", 'fork_served = "yes"')
    _fails(spaces, "torch.toml", 'backend.fork_served must be true or false, got "yes"')


@pytest.mark.parametrize(("entry", "fragment"), [
    ('"torch", []', "a library is a distribution name or a non-empty list"),
    ('"torch", "torch vision"', "'torch vision' is not a distribution name"),
    ('"torch", ["onnx", "onnx"]', "lists a distribution twice"),
    ('"torch", "Torch"', "names 'torch' twice"),
])
def test_bad_libraries(spaces: Path, entry: str, fragment: str) -> None:
    _replace(spaces / "torch.toml", 'libraries = ["torch", "transformers"]', f"libraries = [{entry}]")
    _fails(spaces, "torch.toml", "backend.libraries", fragment)


def test_one_library_has_one_set_of_builds(spaces: Path) -> None:
    _replace(spaces / "onnxruntime_cuda.toml", '"onnxruntime-openvino", ', "")
    _fails(spaces, "onnxruntime_cuda.toml", "library 'onnxruntime' is declared as")


def test_when_uses_is_for_common_knobs(spaces: Path) -> None:
    _replace(spaces / "onnxruntime.toml", 'when = { precision = "int8" }', 'when = { uses = "openmp" }')
    _fails(spaces, "onnxruntime.toml", "only common.toml's knobs depend on what a backend uses")


def test_when_uses_names_a_capability(spaces: Path) -> None:
    _replace(spaces / "common.toml", 'when = { uses = "openmp" }', 'when = { uses = "open_mp" }')
    _fails(spaces, "common.toml", '"open_mp" is not one of ["openmp"]')


def test_common_has_no_backend_table(spaces: Path) -> None:
    _replace(spaces / "common.toml", "format = 1", 'format = 1\n[backend]\nmodule = "a:B"')
    _fails(spaces, "common.toml", "unknown key 'backend'")
