"""The torch eager backend on tiny models: each precision runs and stays near fp32."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, load_torch_model, make_inputs, resolve_model

BACKEND = get_backend("torch")


def _outputs(predictor, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    return [predictor.to_numpy(predictor.run(predictor.bind(b))) for b in batches]


def _pooled_cosines(want: list[np.ndarray], got: list[np.ndarray], batches) -> np.ndarray:
    cosines = []
    for w, g, b in zip(want, got, batches):
        mask = b["attention_mask"][..., None].astype(np.float32)
        pw, pg = (w * mask).sum(1).ravel(), (g * mask).sum(1).ravel()
        cosines.append(pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg))
    return np.array(cosines)


def test_fp32_is_the_transformers_model(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import torch

    ref = resolve_model(str(tiny_bert_dir))
    config = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "none"}
    assert BACKEND.recipe(config) is None
    assert BACKEND.prepare(ref, config, artifact_cache) is None
    predictor = BACKEND.load(ref, config, artifact_cache)
    inputs = make_inputs(ref, seq_len=16, batch=2)
    got = predictor.to_numpy(predictor.run(predictor.bind(inputs)))
    with torch.inference_mode():
        want = load_torch_model(ref)(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state
    assert got.dtype == np.float32 and got.shape == (2, 16, 32)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert not list(artifact_cache.root.glob("*"))  # nothing converted, nothing cached


@pytest.mark.parametrize("precision, min_cosine", [("bf16", 0.99), ("int8", 0.95)])
def test_reduced_precisions_stay_close(precision: str, min_cosine: float, tiny_bert_dir: Path,
                                       artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    batches = eval_inputs(ref, DEFAULT_EVAL_TEXTS, seq_len=32)
    fp32 = BACKEND.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    reduced = BACKEND.load(ref, {"precision": precision, "threads": 1}, artifact_cache)
    want, got = _outputs(fp32, batches), _outputs(reduced, batches)
    assert all(g.dtype == np.float32 and g.shape == (1, 32, 32) for g in got)
    cosines = _pooled_cosines(want, got, batches)
    assert cosines.min() > min_cosine, cosines
    assert max(np.abs(w - g).max() for w, g in zip(want, got)) > 1e-4  # it really ran reduced


def test_int8_replaces_the_linear_layers(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    predictor = BACKEND.load(ref, {"precision": "int8", "threads": 1}, artifact_cache)
    kinds = {type(m).__module__ for m in predictor.model.modules() if type(m).__name__ == "Linear"}
    assert kinds == {"torch.ao.nn.quantized.dynamic.modules.linear"}


def test_classifier_gives_logits(tiny_classifier_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_classifier_dir))
    inputs = make_inputs(ref, seq_len=16)
    for precision in ("fp32", "bf16", "int8"):
        predictor = BACKEND.load(ref, {"precision": precision, "threads": 1}, artifact_cache)
        logits = predictor.to_numpy(predictor.run(predictor.bind(inputs)))
        assert logits.shape == (1, 3) and logits.dtype == np.float32


def test_threads_are_applied(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import torch

    ref = resolve_model(str(tiny_bert_dir))
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            predictor = BACKEND.load(ref, {"precision": "fp32", "threads": threads}, artifact_cache)
            assert BACKEND.threads_in_use(predictor) == threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"precision": "fp16", "threads": 1}, "precision='fp16'"),
        ({"precision": "fp32", "threads": 0}, "threads must be an integer >= 1"),
        ({"precision": "fp32"}, "no 'threads'"),
        ({"threads": 1}, "no 'precision'"),
    ],
)
def test_configs_it_cannot_run(config: dict, reason: str, tiny_bert_dir: Path,
                               artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    with pytest.raises(UnsupportedConfigError, match=re.escape(reason)):
        BACKEND.load(ref, config, artifact_cache)
