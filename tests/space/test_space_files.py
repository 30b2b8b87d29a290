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
