"""torch.compile (inductor, freezing) on a tiny model: it compiles on the first call
per shape, matches eager, reports compile_s, and keeps inductor's cache under the
tuner's cache folder. The whole-trial check runs the real worker."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend
from tuner.backends.torch_compile import inductor_cache_dir
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, make_inputs, resolve_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs g++, which is not on PATH")

COMPILE = get_backend("torch_compile")
EAGER = get_backend("torch")


def _run(predictor, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return predictor.to_numpy(predictor.run(predictor.bind(inputs)))


@pytest.mark.slow  # one inductor compile: about 45 s on this machine
def test_compiles_once_per_shape_and_matches_eager(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import torch._inductor.config as inductor_config

    ref = resolve_model(str(tiny_bert_dir))
    predictor = COMPILE.load(ref, {"precision": "fp32", "mode": "default", "threads": 1}, artifact_cache)
    assert inductor_config.freezing is True
    eager = EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    inputs = eval_inputs(ref, DEFAULT_EVAL_TEXTS[:2], seq_len=16)
    np.testing.assert_allclose(_run(predictor, inputs[0]), _run(eager, inputs[0]), atol=1e-4)
    first = predictor.timings["compile_s"]
    assert first > 0.5  # inductor really compiled (C++ build included)
    np.testing.assert_allclose(_run(predictor, inputs[1]), _run(eager, inputs[1]), atol=1e-4)
    assert predictor.timings["compile_s"] == first  # same shape: no second compile
    # The kernels inductor built are in the tuner's cache, not in /tmp.
    assert any(inductor_cache_dir(artifact_cache).rglob("*.so"))


@pytest.mark.slow
def test_max_autotune_no_cudagraphs_matches_eager(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    config = {"precision": "fp32", "mode": "max-autotune-no-cudagraphs", "threads": 1}
    predictor = COMPILE.load(ref, config, artifact_cache)
    eager = EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    inputs = make_inputs(ref, seq_len=16)
    np.testing.assert_allclose(_run(predictor, inputs), _run(eager, inputs), atol=1e-4)
    assert predictor.timings["compile_s"] > 0


@pytest.mark.slow  # one inductor compile in bf16: about 35 s here
def test_bf16_is_frozen_under_autocast(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    """bf16: autocast around the compiled call, so the traced graph casts the weights and
    freezing folds those casts into bf16 constants (inductor's CPU recipe for bf16).
    It computes what eager bf16 computes, not fp32. Where oneDNN has bf16 kernels
    (native bf16; AMX on a Sapphire Rapids) inductor also prepacks those weights for
    them; the space prunes bf16 elsewhere (tests/space/test_space_isa.py), where this
    runs emulated, slowly, and only its numbers are checked."""
    import torch
    from torch._dynamo.utils import counters

    ref = resolve_model(str(tiny_bert_dir))
    inputs = eval_inputs(ref, DEFAULT_EVAL_TEXTS[:1], seq_len=16)[0]
    counters.clear()
    compiled = _run(COMPILE.load(ref, {"precision": "bf16", "mode": "default", "threads": 1}, artifact_cache), inputs)
    eager_bf16 = _run(EAGER.load(ref, {"precision": "bf16", "threads": 1}, artifact_cache), inputs)
    eager_fp32 = _run(EAGER.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache), inputs)
    np.testing.assert_allclose(compiled, eager_bf16, atol=1e-3)
    assert np.abs(compiled - eager_fp32).max() > 1e-5  # really bf16
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert counters["inductor"]["mkldnn_linear_weight_pack_matcher_count"] > 0, dict(counters["inductor"])


def test_bad_configs(tiny_bert_dir: Path, artifact_cache: ArtifactCache, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    with pytest.raises(UnsupportedConfigError, match="mode='max-autotune'"):
        COMPILE.load(ref, {"precision": "fp32", "mode": "max-autotune", "threads": 1}, artifact_cache)
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(UnsupportedConfigError, match="needs a C\\+\\+ compiler and no-such-compiler is not on PATH"):
        COMPILE.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)


@pytest.mark.slow
def test_trial_reports_compile_time_and_reuses_kernels(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Two trials in fresh worker processes: each reports compile_s; the second finds
    the first one's kernels in the cache and compiles faster."""
    from tuner.hardware import detect
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    ref = resolve_model(str(tiny_bert_dir))
    runner = TrialRunner(ref, detect(), DEFAULT_EVAL_TEXTS[:2], cache_dir=tmp_path / "cache",
                         measure=S.MeasureSettings(warmup_calls=2, warmup_seconds=0.01, min_calls=5,
                                                   min_seconds=0.05, max_seconds=1.0, max_warmup_seconds=0.5))
    workload = S.Workload(seq_len=16)
    reference = runner.reference(workload)
    config = {"backend": "torch_compile", "precision": "fp32", "mode": "default", "threads": 1, "binding": "none"}
    cold, _ = runner.run(workload, config, reference)
    warm, _ = runner.run(workload, config, reference)
    for result in (cold, warm):
        assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
        assert result.accuracy["cosine_min"] > 0.9999
        assert result.timings["compile_s"] > 0
    print("compile_s cold", cold.timings["compile_s"], "warm", warm.timings["compile_s"])
    assert warm.timings["compile_s"] < cold.timings["compile_s"], (cold.timings, warm.timings)
