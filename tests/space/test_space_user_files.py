"""`tuner auto --space FILE`: the user's files read over the shipped ones
(tuner.space.loader.load_space_with), with the shipped files' one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import SpaceFileError
from tuner.hardware import detect
from tuner.space.loader import load_space, load_space_with


@pytest.fixture(scope="module")
def machine():
    return detect()


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_no_files_is_the_shipped_space(machine):
    assert (load_space_with(machine, [], backends=["onnxruntime"]).content_hash()
            == load_space(machine, backends=["onnxruntime"]).content_hash())


def test_fewer_choices_restrict_and_their_dependents_go(machine, tmp_path):
    own = _write(tmp_path, "onnxruntime.toml", '[dimensions.precision]\nchoices = ["fp32"]\n')
    space = load_space_with(machine, [own], backends=["onnxruntime"])
    names = [d.name for d in space.dimensions("onnxruntime")]
    precision = next(d for d in space.dimensions("onnxruntime") if d.name == "precision")
    assert precision.values() == ("fp32",)
    # quantization, quant_granularity, reduce_range, ffn_down only applied to int8
    assert not {"quantization", "quant_granularity", "reduce_range", "ffn_down"} & set(names)
    assert space.size() < load_space(machine, backends=["onnxruntime"]).size()
    assert space.content_hash() != load_space(machine, backends=["onnxruntime"]).content_hash()


def test_a_new_dimension_value_extends(machine, tmp_path):
    own = _write(tmp_path, "common.toml", '[dimensions.allocator]\nchoices = ["system", "jemalloc"]\n'
                                         'default = "jemalloc"\n')
    space = load_space_with(machine, [own], backends=["onnxruntime"])
    assert space.default_config()["allocator"] in ("jemalloc", "system")  # jemalloc may be pruned here
    allocator = next(d for d in space.dimensions("onnxruntime") if d.name == "allocator")
    assert "tcmalloc" not in allocator.values()


@pytest.mark.parametrize("name, text, words", [
    ("onnxruntime.toml", "[dimensions.precision\n", "invalid TOML"),
    ("onnxruntime.toml", '[dimensions.precision]\nchoices = ["fp32"]\ndefault = "int8"\n', "not one of its choices"),
    ("onnxruntime.toml", "[dimensions.precision]\nsurprise = 1\n", "surprise"),
    ("mine.toml", "format = 1\n", "no shipped search-space file mine.toml"),
])
def test_a_bad_file_is_one_line_naming_it(machine, tmp_path, name, text, words):
    own = _write(tmp_path, name, text)
    with pytest.raises(SpaceFileError) as caught:
        load_space_with(machine, [own])
    message = str(caught.value)
    assert message.startswith(str(own)) and words in message and "\n" not in message


def test_a_missing_file_is_one_line(machine, tmp_path):
    with pytest.raises(SpaceFileError, match="cannot read"):
        load_space_with(machine, [tmp_path / "onnxruntime.toml"])
