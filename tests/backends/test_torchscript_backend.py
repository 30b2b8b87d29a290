"""TorchScript on tiny models: the frozen trace is the model (any shape, padded or
not), bf16 stays close, and the trace is a cached artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend
from tuner.backends.torchscript import MODEL_FILE
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, make_inputs, resolve_model

TS = get_backend("torchscript")
EAGER = get_backend("torch")


def _run(predictor, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return predictor.to_numpy(predictor.run(predictor.bind(inputs)))


def test_fp32_trace_matches_eager_on_other_shapes(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import torch

    ref = resolve_model(str(tiny_bert_dir))
    config = {"backend": "torchscript", "precision": "fp32", "threads": 1}
    key = TS.prepare(ref, config, artifact_cache)
    assert (artifact_cache.path(key) / MODEL_FILE).is_file()
    predictor = TS.load(ref, config, artifact_cache)
    assert isinstance(predictor.module, torch.jit.ScriptModule)
    eager = EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    # Traced at 16 tokens with padding; run at other lengths, padded (eval texts) and
    # unpadded (the timed input), batch 1 and 2.
    cases = eval_inputs(ref, DEFAULT_EVAL_TEXTS[:3], seq_len=48) + [make_inputs(ref, 64, batch=2)]
    assert cases[0]["attention_mask"].min() == 0 and cases[-1]["attention_mask"].min() == 1
    for inputs in cases:
        got, want = _run(predictor, inputs), _run(eager, inputs)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_trace_is_built_once(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    config = {"precision": "fp32", "threads": 1}
    first = TS.prepare(ref, config, artifact_cache)
    stamp = (artifact_cache.path(first) / MODEL_FILE).stat().st_mtime_ns
    assert TS.prepare(ref, {**config, "threads": 2}, artifact_cache) == first  # threads do not change it
    assert (artifact_cache.path(first) / MODEL_FILE).stat().st_mtime_ns == stamp
    assert artifact_cache.meta(first)["recipe"]["precision"] == "fp32"
    assert TS.prepare(ref, {"precision": "bf16", "threads": 1}, artifact_cache) != first


def test_bf16_trace_is_reduced_and_close(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    bf16 = TS.load(ref, {"precision": "bf16", "threads": 1}, artifact_cache)
    eager = EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    for inputs in eval_inputs(ref, DEFAULT_EVAL_TEXTS[:4], seq_len=32):
        want, got = _run(eager, inputs), _run(bf16, inputs)
        mask = inputs["attention_mask"][..., None]
        pw, pg = (want * mask).sum(1).ravel(), (got * mask).sum(1).ravel()
        assert pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg) > 0.99
        assert np.abs(want - got).max() > 1e-4  # it really ran in bf16


def test_classifier_gives_logits(tiny_classifier_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_classifier_dir))
    predictor = TS.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    eager = EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    inputs = make_inputs(ref, seq_len=16)
    np.testing.assert_allclose(_run(predictor, inputs), _run(eager, inputs), atol=1e-4)
    assert _run(predictor, inputs).shape == (1, 3)


def test_threads_applied_and_bad_configs(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import torch

    ref = resolve_model(str(tiny_bert_dir))
    before = torch.get_num_threads()
    try:
        predictor = TS.load(ref, {"precision": "fp32", "threads": 2}, artifact_cache)
        assert TS.threads_in_use(predictor) == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UnsupportedConfigError, match="precision='int8'"):
        TS.load(ref, {"precision": "int8", "threads": 1}, artifact_cache)
