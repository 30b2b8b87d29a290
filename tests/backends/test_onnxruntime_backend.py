"""The onnxruntime backend on tiny models: every recipe builds, shares its parents in
the cache, has the graph it claims, and stays near fp32 torch; the session knobs
reach the session."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend
from tuner.backends.calibration import calibration_set_id
from tuner.backends.onnx_export import MODEL_FILE
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, ModelRef, eval_inputs, make_inputs, resolve_model

ORT = get_backend("onnxruntime")
TORCH = get_backend("torch")

FP32 = [{"precision": "fp32", "graph": g} for g in ("unfused", "fused")]
INT8 = [
    {"precision": "int8", "graph": g, "quant_granularity": q, "reduce_range": r}
    for g in ("unfused", "fused")
    for q in ("per_tensor", "per_channel")
    for r in (False, True)
]
STATIC = [
    {"precision": "int8", "quantization": "static", "graph": g, "quant_granularity": q,
     "reduce_range": False, "ffn_down": f}
    for g in ("unfused", "fused")
    for q, f in (("per_channel", "fp32"), ("per_tensor", "int8"))
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
    assert bare["quantization"] == "dynamic" and "ffn_down" not in bare  # what int8 meant before static
    static = ORT.recipe({"precision": "int8", "quantization": "static", "graph": "fused", "threads": 1})
    assert static["ffn_down"] == "fp32" and static["quant_granularity"] == "per_tensor"
    # Session knobs are runtime only.
    knobs = {"graph_opt_level": "basic", "inter_op_threads": 2, "intra_op_spinning": False}
    assert ORT.recipe({**_config(STATIC[0]), **knobs}) == ORT.recipe(_config(STATIC[0]))


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


# --- static int8 (QDQ) ----------------------------------------------------------------


def _producers(graph) -> dict[str, str]:
    return {out: node.op_type for node in graph.node for out in node.output}


@pytest.mark.parametrize("recipe", STATIC, ids=lambda r: f"{r['graph']}-{r['quant_granularity']}-ffn_{r['ffn_down']}")
def test_static_int8_quantizes_the_weight_matmuls(recipe: dict, encoder: ModelRef, cache: ArtifactCache) -> None:
    import onnx

    key = ORT.prepare(encoder, _config(recipe), cache)
    graph = onnx.load(str(cache.path(key) / MODEL_FILE), load_external_data=False).graph
    producer = _producers(graph)
    weights = {init.name for init in graph.initializer}
    int8, fp32 = [], []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        quantized = all(producer.get(name) == "DequantizeLinear" for name in node.input[:2])
        (int8 if quantized else fp32).append(node.name)
    stats = json.loads((cache.path(key) / "quantization.json").read_text())
    assert stats["int8_matmuls"] == len(int8) and stats["fp32_matmuls"] == len(fp32)
    # Each of the 2 layers has Q, K, V, attention output, FFN up, FFN down; fused
    # attention takes Q, K, V into its Attention node.
    per_layer = 6 if recipe["graph"] == "unfused" else 3
    ffn_down = [n for n in int8 + fp32 if "output/dense" in n and "attention" not in n]
    assert len(ffn_down) == 2
    if recipe["ffn_down"] == "fp32":
        assert sorted(stats["excluded"]) == sorted(ffn_down) and not set(ffn_down) & set(int8)
        assert len(int8) == 2 * (per_layer - 1)
    else:
        assert stats["excluded"] == [] and set(ffn_down) <= set(int8)
        assert len(int8) == 2 * per_layer
    # Activations are quantized with calibrated scales: a QuantizeLinear whose scale is
    # a constant, not computed per call as dynamic int8 does.
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and all(n.input[1] in weights for n in quantize)
    # Attention's activation-by-activation MatMuls stay fp32 on the unfused graph.
    if recipe["graph"] == "unfused":
        assert all("attention/self/MatMul" in n or "output/dense" in n for n in fp32), fp32


@pytest.mark.parametrize("recipe", STATIC, ids=lambda r: f"{r['graph']}-{r['quant_granularity']}-ffn_{r['ffn_down']}")
def test_static_int8_runs_close_to_fp32(recipe: dict, encoder: ModelRef, cache: ArtifactCache) -> None:
    batches = eval_inputs(encoder, DEFAULT_EVAL_TEXTS, seq_len=24) + [make_inputs(encoder, seq_len=48, batch=2)]
    want = _run(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    got = _run(ORT, encoder, _config(recipe), cache, batches)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert _min_cosine(want, got, batches) > 0.95
    assert max(np.abs(w - g).max() for w, g in zip(want, got)) > 1e-4  # really quantized


def test_static_and_dynamic_share_the_graph_not_the_artifact(encoder: ModelRef, cache: ArtifactCache) -> None:
    dynamic = {k: v for k, v in STATIC[0].items() if k != "ffn_down"} | {"quantization": "dynamic"}
    static_key = ORT.prepare(encoder, _config(STATIC[0]), cache)
    dynamic_key = ORT.prepare(encoder, _config(dynamic), cache)
    assert static_key != dynamic_key
    static_meta, dynamic_meta = cache.meta(static_key)["recipe"], cache.meta(dynamic_key)["recipe"]
    assert static_meta["parent"] == dynamic_meta["parent"]
    assert static_meta["step"] == "ort-quantize-static" and dynamic_meta["step"] == "ort-quantize-dynamic"
    # The calibration set is part of the key: editing the texts rebuilds.
    assert static_meta["calibration_set"] == calibration_set_id() and static_meta["calibration"] == "minmax"


def test_calibration_rows_are_not_the_guard_sentences(encoder: ModelRef, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.backends import calibration

    assert not set(calibration.CALIBRATION_TEXTS) & set(DEFAULT_EVAL_TEXTS)
    rows = calibration.calibration_inputs(encoder, ["input_ids", "attention_mask", "token_type_ids"])
    assert len(rows) == len(calibration.CALIBRATION_TEXTS)
    shapes = {r["input_ids"].shape for r in rows}
    assert len(shapes) == 1  # one shape: the histogram calibrators stack what they collect
    (shape,) = shapes
    assert shape[0] == 1 and 128 < shape[1] <= calibration.MAX_CALIBRATION_TOKENS  # long rows reach past 128
    assert all(r["input_ids"].dtype == np.int64 for r in rows)
    assert min(int(r["attention_mask"].sum()) for r in rows) <= 8  # short texts are padded, not dropped
    before = calibration.calibration_set_id()
    monkeypatch.setattr(calibration, "CALIBRATION_TEXTS", calibration.CALIBRATION_TEXTS[:-1])
    assert calibration.calibration_set_id() != before


def test_static_stats_see_weights_only_qdq_as_fp32() -> None:
    """The trap the fused graph falls into without symbolic shape inference: weights get
    a DequantizeLinear, activations none. That must count as fp32, not int8."""
    import onnx
    from onnx import TensorProto, helper

    from tuner.backends.onnx_quantize import static_stats

    weight = helper.make_tensor("w_q", TensorProto.INT8, [4, 4], [1] * 16)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="weights_only"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[weight, scale, zero])
    onnx.checker.check_model(helper.make_model(graph))
    assert static_stats(graph) == {"int8_matmuls": 0, "fp32_matmuls": 1, "quantize_linear": 0}


# --- session knobs --------------------------------------------------------------------

KNOBS = [
    {"graph_opt_level": "disabled", "inter_op_threads": 1, "intra_op_spinning": False},
    {"graph_opt_level": "basic", "inter_op_threads": 2, "intra_op_spinning": True},
    {"graph_opt_level": "extended", "inter_op_threads": 3, "intra_op_spinning": False},
    {"graph_opt_level": "all", "inter_op_threads": 1, "intra_op_spinning": True},
]


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: f"{k['graph_opt_level']}-inter{k['inter_op_threads']}")
def test_session_knobs_reach_the_session(knobs: dict, encoder: ModelRef, cache: ArtifactCache) -> None:
    import onnxruntime as ort

    batches = [make_inputs(encoder, seq_len=16, batch=2)]
    predictor = ORT.load(encoder, {**_config(FP32[1], threads=2), **knobs}, cache)
    options = predictor.session.get_session_options()
    level = ort.GraphOptimizationLevel
    levels = {"all": level.ORT_ENABLE_ALL, "extended": level.ORT_ENABLE_EXTENDED, "basic": level.ORT_ENABLE_BASIC,
              "disabled": level.ORT_DISABLE_ALL}
    assert options.graph_optimization_level == levels[knobs["graph_opt_level"]]
    parallel = knobs["inter_op_threads"] > 1
    assert options.execution_mode == (ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL)
    assert options.inter_op_num_threads == knobs["inter_op_threads"]
    assert options.intra_op_num_threads == 2 == ORT.threads_in_use(predictor)
    spin = "1" if knobs["intra_op_spinning"] else "0"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == spin
    if parallel:
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == spin
    # Every knob runs the same graph: the outputs do not move.
    want = _run(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    np.testing.assert_allclose(predictor.to_numpy(predictor.run(predictor.bind(batches[0]))), want[0], atol=1e-4)


def test_session_knob_defaults_are_ort_defaults() -> None:
    assert ORT.session_knobs({"threads": 3}) == {
        "threads": 3, "execution_mode": "sequential", "inter_op_threads": 1, "intra_op_spinning": True,
        "graph_opt_level": "all", "int8_kernel": "u8s8",
    }
    assert ORT.session_knobs({"threads": 1, "inter_op_threads": 2})["execution_mode"] == "parallel"


def test_parallel_executor_with_one_inter_op_thread_is_sequential(encoder: ModelRef, cache: ArtifactCache) -> None:
    """Why inter_op_threads is the only executor knob: ORT itself turns a parallel
    session with one inter-op thread into a sequential one."""
    import onnxruntime as ort

    from tuner.backends.onnx_export import MODEL_FILE as FILE

    folder = cache.path(ORT.prepare(encoder, _config(FP32[0]), cache))
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / FILE), options, providers=["CPUExecutionProvider"])
    assert session.get_session_options().execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


@pytest.mark.parametrize(
    "knobs, reason",
    [
        ({"graph_opt_level": "layout"}, "graph_opt_level='layout'"),
        ({"inter_op_threads": 0}, "inter_op_threads must be an integer >= 1"),
        ({"inter_op_threads": True}, "inter_op_threads must be an integer >= 1"),
        ({"intra_op_spinning": 1}, "intra_op_spinning=1"),
        ({"precision": "int8", "quantization": "qat"}, "quantization='qat'"),
        ({"precision": "int8", "quantization": "static", "ffn_down": "bf16"}, "ffn_down='bf16'"),
    ],
)
def test_knobs_it_cannot_run(knobs: dict, reason: str, encoder: ModelRef, cache: ArtifactCache) -> None:
    with pytest.raises(UnsupportedConfigError, match=re.escape(reason)):
        ORT.prepare(encoder, {**_config(FP32[0]), **knobs}, cache)
