"""The openvino backend on tiny models: the IR is the model at any shape, is built once
and shared by fp32 and bf16, int8 is really quantized and stays close, and every
compile-time knob is set explicitly and read back."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed")

from tuner.artifacts.cache import ArtifactCache  # noqa: E402
from tuner.backends import get_backend  # noqa: E402
from tuner.backends.openvino import IR_FILE, _check_compiled  # noqa: E402
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
                   _config(cpu_pinning=False)):
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


def _cpu_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 on this CPU (it says so itself;
    elsewhere a bf16 hint compiles as f32, which the backend refuses)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


NATIVE_BF16 = _cpu_runs_bf16()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="OpenVINO's CPU plugin has no BF16 here; "
                                "test_bf16_is_refused_where_the_cpu_lacks_it covers this CPU")


@pytest.mark.parametrize(
    "knobs, expect",
    [
        ({}, {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}),
        pytest.param({"precision": "bf16"}, {"INFERENCE_PRECISION_HINT": "bf16"}, marks=needs_bf16),
        ({"precision": "int8"}, {"INFERENCE_PRECISION_HINT": "f32"}),
        ({"threads": 2, "performance_hint": "throughput", "streams": 2},
         {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 2}),
        ({"threads": 2, "cpu_pinning": False}, {"ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": 2}),
    ],
    ids=["default", "bf16", "int8", "throughput", "unpinned"],
)
def test_compile_knobs_are_set_and_read_back(knobs: dict, expect: dict, encoder: ModelRef,
                                             cache: ArtifactCache) -> None:
    config = _config(**knobs)
    predictor = OV.load(encoder, config, cache)
    compiled = predictor.compiled
    asked = OV.compile_options(config)
    for key, value in expect.items():
        assert asked[key] == value
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert ("bf16" in precision or "bfloat16" in precision) == (asked["INFERENCE_PRECISION_HINT"] == "bf16")
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
        (_config(threads=0), "threads must be an integer >= 1"),
    ],
)
def test_configs_it_cannot_run(config: dict, reason: str, encoder: ModelRef, cache: ArtifactCache) -> None:
    with pytest.raises(UnsupportedConfigError, match=re.escape(reason)):
        OV.prepare(encoder, config, cache)
