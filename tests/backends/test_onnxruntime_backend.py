"""The onnxruntime backend on tiny models: every recipe builds, shares its parents in
the cache, has the graph it claims, and stays near fp32 torch."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend
from tuner.backends.onnx_export import MODEL_FILE
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, make_inputs, resolve_model
from tuner.trial.spec import ModelRef

ORT = get_backend("onnxruntime")
TORCH = get_backend("torch")

FP32 = [{"precision": "fp32", "graph": g} for g in ("unfused", "fused")]
INT8 = [
    {"precision": "int8", "graph": g, "quant_granularity": q, "reduce_range": r}
    for g in ("unfused", "fused")
    for q in ("per_tensor", "per_channel")
    for r in (False, True)
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    # One cache for the module: the export is built once and every recipe reuses it.
    return ArtifactCache(tmp_path_factory.mktemp("ort-artifacts"))


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> ModelRef:
    return resolve_model(str(tiny_bert_dir))


def _config(recipe: dict, threads: int = 1) -> dict:
    return {"backend": "onnxruntime", **recipe, "threads": threads, "binding": "none"}


def _run(backend, ref: ModelRef, config: dict, cache: ArtifactCache, batches) -> list[np.ndarray]:
    predictor = backend.load(ref, config, cache)
    return [predictor.to_numpy(predictor.run(predictor.bind(b))) for b in batches]


def _pooled(output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (output * mask[..., None]).sum(1).ravel()


def _min_cosine(want: list[np.ndarray], got: list[np.ndarray], batches) -> float:
    cosines = []
    for w, g, b in zip(want, got, batches):
        pw, pg = _pooled(w, b["attention_mask"]), _pooled(g, b["attention_mask"])
        cosines.append(float(pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg)))
    return min(cosines)


def _ops(cache: ArtifactCache, key: str) -> Counter:
    import onnx

    graph = onnx.load(str(cache.path(key) / MODEL_FILE), load_external_data=False).graph
    return Counter(node.op_type for node in graph.node)


@pytest.mark.parametrize("recipe", FP32, ids=lambda r: r["graph"])
def test_fp32_matches_torch_eager(recipe: dict, encoder: ModelRef, cache: ArtifactCache) -> None:
    batches = [make_inputs(encoder, seq_len=16, batch=2), *eval_inputs(encoder, DEFAULT_EVAL_TEXTS[:4], 40)]
    want = _run(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    got = _run(ORT, encoder, _config(recipe), cache, batches)
    for w, g in zip(want, got):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-4)


@pytest.mark.parametrize("recipe", INT8, ids=lambda r: "-".join(str(v) for v in list(r.values())[1:]))
def test_int8_runs_close_to_fp32(recipe: dict, encoder: ModelRef, cache: ArtifactCache) -> None:
    batches = eval_inputs(encoder, DEFAULT_EVAL_TEXTS, seq_len=32)
    want = _run(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    got = _run(ORT, encoder, _config(recipe), cache, batches)
    assert all(g.shape == (1, 32, 32) for g in got)
    assert _min_cosine(want, got, batches) > 0.95
    assert max(np.abs(w - g).max() for w, g in zip(want, got)) > 1e-4  # really quantized


def test_graphs_are_what_the_recipe_says(encoder: ModelRef, cache: ArtifactCache) -> None:
    keys = {
        (r["graph"], r["precision"]): ORT.prepare(encoder, _config(r), cache)
        for r in [*FP32, INT8[0], INT8[4]]  # int8 per-tensor from each graph
    }
    unfused, fused = _ops(cache, keys["unfused", "fp32"]), _ops(cache, keys["fused", "fp32"])
    assert unfused["MatMul"] > 0 and not unfused["Attention"] and not unfused["SkipLayerNormalization"]
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4 and fused["BiasGelu"] == 2
    fusions = json.loads((cache.path(keys["fused", "fp32"]) / "fusions.json").read_text())
    assert fusions["Attention"] == 2

    q_unfused, q_fused = _ops(cache, keys["unfused", "int8"]), _ops(cache, keys["fused", "int8"])
    assert q_unfused["MatMulInteger"] == 12 and not q_unfused["QAttention"]  # 6 weight MatMuls per layer
    # QKV goes into QAttention; attention output and both FFN MatMuls stay MatMulInteger.
    assert q_fused["QAttention"] == 2 and q_fused["MatMulInteger"] == 6


def test_variants_share_their_parents(encoder: ModelRef, cache: ArtifactCache) -> None:
    keys = {json.dumps(r, sort_keys=True): ORT.prepare(encoder, _config(r), cache) for r in [*FP32, *INT8]}
    assert len(set(keys.values())) == len(keys)  # one artifact per recipe
    parent = {key: cache.meta(key)["recipe"].get("parent") for key in keys.values()}
    fp32 = {keys[json.dumps(r, sort_keys=True)] for r in FP32}
    # Each int8 graph is quantized from one of the two fp32 graphs...
    assert {parent[key] for key in set(keys.values()) - fp32} == fp32
    # ...and both fp32 graphs come from one export.
    (export,) = {parent[key] for key in fp32}
    assert cache.meta(export)["recipe"]["step"] == "onnx-export"
    # 1 export + 2 graphs + 8 quantized; runtime knobs add nothing.
    ORT.prepare(encoder, _config(FP32[0], threads=2), cache)
    assert len([p for p in cache.root.iterdir() if not p.name.startswith(".")]) == 11


def test_runtime_knobs_and_unknown_keys_do_not_change_the_recipe() -> None:
    base = ORT.recipe(_config(INT8[0]))
    assert ORT.recipe({**_config(INT8[0], threads=2), "binding": "numactl", "allocator": "jemalloc"}) == base
    assert ORT.recipe(_config(FP32[0])) == {"precision": "fp32", "graph": "unfused", "opset": 17}
    # int8 without the quantization keys takes ORT's own defaults.
    bare = ORT.recipe({"precision": "int8", "graph": "fused", "threads": 1})
    assert bare["quant_granularity"] == "per_tensor" and bare["reduce_range"] is False


def test_classifier_logits(tiny_classifier_dir: Path, cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_classifier_dir))
    batches = eval_inputs(ref, DEFAULT_EVAL_TEXTS[:6], seq_len=24)
    want = _run(TORCH, ref, {"precision": "fp32", "threads": 1}, cache, batches)
    for recipe in (FP32[1], INT8[2]):
        got = _run(ORT, ref, _config(recipe), cache, batches)
        assert all(g.shape == (1, 3) for g in got)
        tolerance = 1e-4 if recipe["precision"] == "fp32" else 0.05
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), atol=tolerance)


def test_threads_are_read_back_from_the_session(encoder: ModelRef, cache: ArtifactCache) -> None:
    for threads in (1, 2):
        predictor = ORT.load(encoder, _config(FP32[0], threads=threads), cache)
        assert ORT.threads_in_use(predictor) == threads


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"precision": "bf16", "graph": "fused", "threads": 1}, "onnxruntime cannot run precision='bf16'"),
        ({"precision": "fp32", "graph": "folded", "threads": 1}, "onnxruntime cannot run graph='folded'"),
        ({"precision": "fp32", "threads": 1}, "onnxruntime: the config has no 'graph'"),
        ({**INT8[0], "quant_granularity": "per_group", "threads": 1}, "quant_granularity='per_group'"),
        ({**INT8[0], "reduce_range": 1, "threads": 1}, "reduce_range=1"),
        ({"precision": "fp32", "graph": "fused", "threads": -1}, "threads must be an integer >= 1"),
    ],
)
def test_configs_it_cannot_run(config: dict, reason: str, encoder: ModelRef, cache: ArtifactCache) -> None:
    with pytest.raises(UnsupportedConfigError, match=re.escape(reason)):
        ORT.prepare(encoder, config, cache)
