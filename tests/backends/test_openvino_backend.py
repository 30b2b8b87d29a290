"""The openvino backend on tiny models: the IR is the model at any shape, is built once
and shared by fp32 and bf16 (and by static shapes), int8 is really quantized and stays
close, every compile-time knob is set explicitly and read back, and the runtime graph
runs the precisions the config names."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed")

from tuner.artifacts.cache import ArtifactCache  # noqa: E402
from tuner.backends import get_backend  # noqa: E402
from tuner.backends.openvino import IR_FILE, _check_compiled, _check_runtime, runtime_precisions  # noqa: E402
from tuner.errors import UnsupportedConfigError  # noqa: E402
from tuner.model import DEFAULT_EVAL_TEXTS, ModelRef, eval_inputs, make_inputs, resolve_model  # noqa: E402

OV = get_backend("openvino")
TORCH = get_backend("torch")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("ov-artifacts"))


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> ModelRef:
    return resolve_model(str(tiny_bert_dir))


def _config(**overrides) -> dict:
    return {"backend": "openvino", "precision": "fp32", "performance_hint": "latency", "cpu_pinning": True,
            "threads": 1, "binding": "none", **overrides}


def _outputs(backend, ref: ModelRef, config: dict, cache: ArtifactCache, batches) -> list[np.ndarray]:
    predictor = backend.load(ref, config, cache)
    return [predictor.to_numpy(predictor.run(predictor.bind(b))) for b in batches]


def _min_cosine(want: list[np.ndarray], got: list[np.ndarray], batches) -> float:
    cosines = []
    for w, g, b in zip(want, got, batches):
        mask = b["attention_mask"][..., None]
        pw, pg = (w * mask).sum(1).ravel(), (g * mask).sum(1).ravel()
        cosines.append(float(pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg)))
    return min(cosines)


def _batches(ref: ModelRef) -> list[dict[str, np.ndarray]]:
    # Padded eval texts at two lengths, and an unpadded batch of 2: the IR has dynamic axes.
    return [*eval_inputs(ref, DEFAULT_EVAL_TEXTS[:4], 24), *eval_inputs(ref, DEFAULT_EVAL_TEXTS[4:6], 40),
            make_inputs(ref, 32, batch=2)]


def test_fp32_matches_torch_at_any_shape(encoder: ModelRef, cache: ArtifactCache) -> None:
    batches = _batches(encoder)
    want = _outputs(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    got = _outputs(OV, encoder, _config(), cache, batches)
    for w, g in zip(want, got):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_ir_is_converted_once_and_kept_f32(encoder: ModelRef, cache: ArtifactCache) -> None:
    import openvino as ov

    key = OV.prepare(encoder, _config(), cache)
    stamp = (cache.path(key) / IR_FILE).stat().st_mtime_ns
    # bf16 is a compile hint and threads/hints are runtime knobs: the same IR.
    for config in (_config(precision="bf16"), _config(threads=2, performance_hint="throughput", streams=2),
                   _config(cpu_pinning=False), _config(shapes="static")):
        assert OV.prepare(encoder, config, cache) == key
    assert (cache.path(key) / IR_FILE).stat().st_mtime_ns == stamp
    meta = cache.meta(key)["recipe"]
    assert meta["step"] == "ov-convert" and meta["fp16"] is False
    assert cache.meta(meta["parent"])["recipe"]["step"] == "onnx-export"  # the export onnxruntime uses too
    # ov.save_model would halve the weights to fp16 by default.
    model = ov.Core().read_model(str(cache.path(key) / IR_FILE))
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    types = {op.get_output_element_type(0) for op in constants}
    assert ov.Type.f16 not in types
    assert sum(op.get_output_element_type(0) == ov.Type.f32 and len(op.get_output_shape(0)) == 2
               for op in constants) >= 12  # the weight matrices


def test_int8_is_quantized_and_close(encoder: ModelRef, cache: ArtifactCache) -> None:
    import openvino as ov

    batches = _batches(encoder)
    want = _outputs(TORCH, encoder, {"precision": "fp32", "threads": 1}, cache, batches)
    for preset in ("mixed", "performance"):
        config = _config(precision="int8", quant_preset=preset)
        key = OV.prepare(encoder, config, cache)
        recipe = cache.meta(key)["recipe"]
        assert recipe["step"] == "ov-nncf-int8" and recipe["preset"] == preset
        assert cache.meta(recipe["parent"])["recipe"]["step"] == "ov-convert"  # quantized from the f32 IR
        ops = [op.get_type_name() for op in ov.Core().read_model(str(cache.path(key) / IR_FILE)).get_ops()]
        assert ops.count("FakeQuantize") >= 12  # 2 layers x 6 weight MatMuls, activations and weights
        got = _outputs(OV, encoder, config, cache, batches)
        assert _min_cosine(want, got, batches) > 0.95
        assert max(np.abs(w - g).max() for w, g in zip(want, got)) > 1e-4  # really quantized
    assert OV.prepare(encoder, _config(precision="int8", quant_preset="mixed"), cache) != key
    # The remainder's precision and static shapes are compile-time: the same int8 IR.
    for knobs in ({"int8_remainder": "bf16"}, {"int8_remainder": "f16"}, {"shapes": "static"}):
        assert OV.prepare(encoder, _config(precision="int8", quant_preset="performance", **knobs), cache) == key


def _cpu_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 on this CPU (it says so itself;
    elsewhere a bf16 hint compiles as f32, which the backend refuses)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _cpu_runs_f16() -> bool:
    """As for bf16: FP16 among the plugin's capabilities (AVX512-FP16 on x86)."""
    import openvino as ov

    return "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


NATIVE_BF16 = _cpu_runs_bf16()
NATIVE_F16 = _cpu_runs_f16()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="OpenVINO's CPU plugin has no BF16 here; "
                                "test_bf16_is_refused_where_the_cpu_lacks_it covers this CPU")
needs_f16 = pytest.mark.skipif(not NATIVE_F16, reason="OpenVINO's CPU plugin has no FP16 here; "
                               "test_int8_remainder_is_refused_where_the_cpu_lacks_it covers this CPU")


@pytest.mark.parametrize(
    "knobs, expect",
    [
        ({}, {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}),
        pytest.param({"precision": "bf16"}, {"INFERENCE_PRECISION_HINT": "bf16"}, marks=needs_bf16),
        ({"precision": "int8"}, {"INFERENCE_PRECISION_HINT": "f32"}),
        ({"precision": "int8", "int8_remainder": "f32"}, {"INFERENCE_PRECISION_HINT": "f32"}),
        pytest.param({"precision": "int8", "int8_remainder": "bf16"}, {"INFERENCE_PRECISION_HINT": "bf16"},
                     marks=needs_bf16),
        pytest.param({"precision": "int8", "int8_remainder": "f16"}, {"INFERENCE_PRECISION_HINT": "f16"},
                     marks=needs_f16),
        ({"threads": 2, "performance_hint": "throughput", "streams": 2},
         {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 2}),
        ({"threads": 2, "cpu_pinning": False}, {"ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": 2}),
    ],
    ids=["default", "bf16", "int8", "int8-f32", "int8-bf16", "int8-f16", "throughput", "unpinned"],
)
def test_compile_knobs_are_set_and_read_back(knobs: dict, expect: dict, encoder: ModelRef,
                                             cache: ArtifactCache) -> None:
    config = _config(**knobs)
    predictor = OV.load(encoder, config, cache)
    compiled = predictor.compiled
    asked = OV.compile_options(config)
    for key, value in expect.items():
        assert asked[key] == value
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    assert precision.get_type_name() == asked["INFERENCE_PRECISION_HINT"]
    # The runtime graph runs what the name says: int8 matrix products for int8, and the
    # floating-point layers in the hint's type.
    ran = {kind for _, kind in runtime_precisions(compiled)}
    low = {"bf16", "f16"} & ran
    assert low == ({asked["INFERENCE_PRECISION_HINT"]} - {"f32"})
    assert bool({"i8", "u8"} & {kind for layer, kind in runtime_precisions(compiled) if layer == "FullyConnected"}) \
        == (config["precision"] == "int8")
    assert int(compiled.get_property("NUM_STREAMS")) == asked["NUM_STREAMS"]
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == asked["INFERENCE_NUM_THREADS"]
    assert OV.threads_in_use(predictor) == asked["INFERENCE_NUM_THREADS"]
    assert bool(compiled.get_property("ENABLE_CPU_PINNING")) is asked["ENABLE_CPU_PINNING"]
    # And it runs: outputs of the one request.
    out = predictor.to_numpy(predictor.run(predictor.bind(make_inputs(encoder, 16))))
    assert out.shape == (1, 16, 32) and np.isfinite(out).all()


@pytest.mark.skipif(NATIVE_BF16, reason="this CPU computes bf16; test_bf16_hint_is_explicit_and_close covers it")
def test_bf16_is_refused_where_the_cpu_lacks_it(encoder: ModelRef, cache: ArtifactCache) -> None:
    """Without native bf16 OpenVINO compiles a bf16 hint as f32: the backend says so
    rather than timing f32 under a bf16 label (the space prunes bf16 there anyway)."""
    with pytest.raises(UnsupportedConfigError, match=re.escape("(asked bf16)")):
        OV.load(encoder, _config(precision="bf16"), cache)


@pytest.mark.parametrize("remainder, native", [("bf16", NATIVE_BF16), ("f16", NATIVE_F16)])
def test_int8_remainder_is_refused_where_the_cpu_lacks_it(remainder: str, native: bool, encoder: ModelRef,
                                                          cache: ArtifactCache) -> None:
    """The remainder of int8 likewise: OpenVINO compiles a bf16 or f16 hint it cannot
    compute natively as f32, and the backend refuses the config rather than time f32
    under that name (the space prunes both where the CPU lacks the instructions:
    tests/space/test_space_isa.py)."""
    if native:
        pytest.skip(f"this CPU computes {remainder}: test_int8_remainder_runs_in_its_type covers it")
    with pytest.raises(UnsupportedConfigError, match=re.escape(f"(asked {remainder})")):
        OV.load(encoder, _config(precision="int8", int8_remainder=remainder), cache)


@pytest.mark.parametrize("remainder", [pytest.param("bf16", marks=needs_bf16), pytest.param("f16", marks=needs_f16)])
def test_int8_remainder_runs_in_its_type(remainder: str, encoder: ModelRef, cache: ArtifactCache) -> None:
    """Where the CPU computes it, int8 with a bf16 or f16 remainder keeps its int8
    matrix products, runs the rest in that type, and stays close to int8 with f32."""
    batches = eval_inputs(encoder, DEFAULT_EVAL_TEXTS[:4], 24)
    config = _config(precision="int8", int8_remainder=remainder)
    predictor = OV.load(encoder, config, cache)
    counts = runtime_precisions(predictor.compiled)
    assert any(layer == "FullyConnected" and kind in ("i8", "u8") for layer, kind in counts)
    assert any(kind == remainder for _, kind in counts)
    want = _outputs(OV, encoder, _config(precision="int8"), cache, batches)
    got = _outputs(OV, encoder, config, cache, batches)
    assert _min_cosine(want, got, batches) > 0.99


@needs_bf16
def test_bf16_hint_is_explicit_and_close(encoder: ModelRef, cache: ArtifactCache) -> None:
    """bf16 is asked for, never inherited: on a CPU with native bf16 OpenVINO's default
    would be bf16 for the fp32 config too (the fp32 case is in the test above)."""
    batches = eval_inputs(encoder, DEFAULT_EVAL_TEXTS[:4], 24)
    want = _outputs(OV, encoder, _config(), cache, batches)
    got = _outputs(OV, encoder, _config(precision="bf16"), cache, batches)
    assert _min_cosine(want, got, batches) > 0.99
    assert max(np.abs(w - g).max() for w, g in zip(want, got)) > 1e-5  # bf16 really computed


def test_a_knob_openvino_did_not_take_is_refused() -> None:
    asked = OV.compile_options(_config(threads=2))

    def compiled(**changes) -> SimpleNamespace:
        props = {"INFERENCE_PRECISION_HINT": "<Type: 'float32'>", "PERFORMANCE_HINT": "PerformanceMode.LATENCY",
                 "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": True, **changes}
        return SimpleNamespace(get_property=props.__getitem__)

    _check_compiled(compiled(), asked)  # what it asked for: no complaint
    bf16 = "INFERENCE_PRECISION_HINT=<Type: 'bfloat16'> (asked f32)"
    with pytest.raises(UnsupportedConfigError, match=re.escape(bf16)):
        _check_compiled(compiled(INFERENCE_PRECISION_HINT="<Type: 'bfloat16'>"), asked)
    with pytest.raises(UnsupportedConfigError, match="ENABLE_CPU_PINNING=False"):
        _check_compiled(compiled(ENABLE_CPU_PINNING=False), asked)
    with pytest.raises(UnsupportedConfigError, match=r"INFERENCE_NUM_THREADS=1 \(asked 2\), NUM_STREAMS=2"):
        _check_compiled(compiled(INFERENCE_NUM_THREADS=1, NUM_STREAMS=2), asked)


def test_element_types_are_read_exactly() -> None:
    from tuner.backends.openvino import _element_type

    assert [_element_type(t) for t in ("<Type: 'float32'>", "<Type: 'bfloat16'>", "<Type: 'float16'>", "f16")] == \
        ["f32", "bf16", "f16", "f16"]
    asked = OV.compile_options(_config(precision="int8", int8_remainder="f16", threads=2))
    props = {"INFERENCE_PRECISION_HINT": "<Type: 'bfloat16'>", "PERFORMANCE_HINT": "PerformanceMode.LATENCY",
             "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": True}
    # "float16" is inside "bfloat16": a substring test would take bf16 for the f16 asked.
    with pytest.raises(UnsupportedConfigError, match=re.escape("INFERENCE_PRECISION_HINT=<Type: 'bfloat16'> "
                                                               "(asked f16)")):
        _check_compiled(SimpleNamespace(get_property=props.__getitem__), asked)


@pytest.mark.parametrize(
    "counts, precision, hint, problem",
    [
        ({("FullyConnected", "i8"): 3, ("MVN", "f32"): 2}, "int8", "f32", None),
        ({("FullyConnected", "f32"): 12, ("MVN", "f32"): 2}, "int8", "f32", "no matrix product runs in int8"),
        ({("FullyConnected", "u8"): 9, ("MVN", "f32"): 5}, "int8", "bf16", "no layer runs in bf16"),
        ({("FullyConnected", "u8"): 9, ("MVN", "bf16"): 5}, "int8", "bf16", None),
        ({("FullyConnected", "u8"): 9, ("MVN", "bf16"): 5}, "int8", "f16", "no layer runs in f16"),
        ({("FullyConnected", "f32"): 12, ("Softmax", "bf16"): 2}, "fp32", "f32", "layers run in bf16"),
        ({("FullyConnected", "bf16"): 12}, "bf16", "bf16", None),
    ],
)
def test_the_runtime_graph_must_run_what_the_config_says(counts: dict, precision: str, hint: str,
                                                         problem: str | None) -> None:
    from collections import Counter

    if problem is None:
        _check_runtime(Counter(counts), precision, hint)
    else:
        with pytest.raises(UnsupportedConfigError, match=re.escape(problem)):
            _check_runtime(Counter(counts), precision, hint)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_static_shapes_compile_per_shape_and_match_dynamic(precision: str, encoder: ModelRef,
                                                           cache: ArtifactCache) -> None:
    """shapes=static: the IR reshaped to each input's [batch, seq] and compiled when an
    input of a new shape is bound (outside the timed calls); the same outputs as the
    dynamic model, a smaller runtime graph (shape computations folded away), one
    compiled model at a time."""
    batches = [*eval_inputs(encoder, DEFAULT_EVAL_TEXTS[:2], 24), make_inputs(encoder, 16, batch=3)]
    want = _outputs(OV, encoder, _config(precision=precision), cache, batches)
    dynamic = OV.load(encoder, _config(precision=precision), cache)
    static = OV.load(encoder, _config(precision=precision, shapes="static"), cache)
    assert static.compiled is None and OV.threads_in_use(static) is None  # nothing to compile for yet
    got = []
    for batch in batches:
        bound = static.bind(batch)
        shapes = {port.get_any_name(): tuple(port.get_shape()) for port in static.compiled.inputs}
        assert shapes == {name: batch[name].shape for name in static.input_names}  # static, this shape
        got.append(static.to_numpy(static.run(bound)))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert static.timings["compile_s"] > 0  # two shapes compiled: (1, 24) then (3, 16)
    before = static.timings["compile_s"]
    static.run(static.bind(batches[-1]))
    assert static.timings["compile_s"] == before  # the same shape again: no compile
    assert OV.threads_in_use(static) == 1
    assert sum(runtime_precisions(static.compiled).values()) < sum(runtime_precisions(dynamic.compiled).values())


@pytest.mark.slow  # a reference run and a trial in fresh workers: about 50 s here
def test_trial_with_static_shapes(encoder: ModelRef, tmp_path: Path) -> None:
    """A whole trial in a fresh worker: static int8 with the f32 remainder (what runs on
    any CPU) passes, reports its compile time, and the probe reads its threads."""
    from tuner.hardware import detect
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    runner = TrialRunner(encoder, detect(), DEFAULT_EVAL_TEXTS[:2], cache_dir=tmp_path / "cache",
                         measure=S.MeasureSettings(warmup_calls=2, warmup_seconds=0.01, min_calls=5,
                                                   min_seconds=0.05, max_seconds=1.0, max_warmup_seconds=0.5))
    workload = S.Workload(seq_len=16, batch=2)
    reference = runner.reference(workload)
    config = {**_config(precision="int8", quant_preset="mixed", int8_remainder="f32", shapes="static")}
    result, _ = runner.run(workload, config, reference)
    assert result.status == S.OK, (result.reason, result.stderr_tail[-2000:])
    assert result.accuracy["cosine_min"] > 0.95
    assert result.timings["compile_s"] > 0  # (1, 16) for the accuracy check, then (2, 16) timed
    assert result.effective["threads"] == 1


def test_classifier_logits(tiny_classifier_dir: Path, cache: ArtifactCache) -> None:
    ref = resolve_model(str(tiny_classifier_dir))
    batches = eval_inputs(ref, DEFAULT_EVAL_TEXTS[:6], seq_len=24)
    want = np.concatenate(_outputs(TORCH, ref, {"precision": "fp32", "threads": 1}, cache, batches))
    for precision, tolerance in (("fp32", 1e-4), ("int8", 0.05)):
        got = np.concatenate(_outputs(OV, ref, _config(precision=precision), cache, batches))
        assert got.shape == (6, 3)
        np.testing.assert_allclose(got, want, atol=tolerance)


@pytest.mark.parametrize(
    "config, reason",
    [
        (_config(precision="fp16"), "openvino cannot run precision='fp16'"),
        (_config(performance_hint="cumulative_throughput"), "performance_hint='cumulative_throughput'"),
        (_config(performance_hint="throughput", streams=0), "streams must be an integer >= 1"),
        (_config(performance_hint="throughput", streams=2, threads=1), "2 streams need at least as many threads"),
        (_config(cpu_pinning="yes"), "cpu_pinning='yes'"),
        (_config(precision="int8", quant_preset="accuracy"), "quant_preset='accuracy'"),
        (_config(precision="int8", int8_remainder="fp16"), "int8_remainder='fp16'"),
        (_config(shapes="fixed"), "shapes='fixed'"),
        (_config(threads=0), "threads must be an integer >= 1"),
    ],
)
def test_configs_it_cannot_run(config: dict, reason: str, encoder: ModelRef, cache: ArtifactCache) -> None:
    with pytest.raises(UnsupportedConfigError, match=re.escape(reason)):
        OV.prepare(encoder, config, cache)
