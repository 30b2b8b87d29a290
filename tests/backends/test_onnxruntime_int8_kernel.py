"""ONNX Runtime's int8 GEMM on x86 (the onnxruntime backend's int8_kernel): U8S8, whose
kernel is AMX or VNNI where the CPU has them and VPMADDUBSW (16-bit pair sums that
saturate) elsewhere, or U8U8 through session.x64quantprecision, which rewrites the int8
weights to uint8 at load. What each choice runs is checked on this CPU, whatever it has:
the space keeps u8u8 only where U8S8 saturates (tests/space/test_space_isa.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from tuner.artifacts.cache import ArtifactCache  # noqa: E402
from tuner.backends import get_backend  # noqa: E402
from tuner.backends.onnx_export import MODEL_FILE  # noqa: E402
from tuner.backends.onnxruntime import X64_QUANT_PRECISION, session_options  # noqa: E402
from tuner.errors import UnsupportedConfigError  # noqa: E402
from tuner.hardware import detect  # noqa: E402
from tuner.model import DEFAULT_EVAL_TEXTS, ModelRef, eval_inputs, resolve_model  # noqa: E402

ORT = get_backend("onnxruntime")
TORCH = get_backend("torch")
HOST = detect()
X86 = HOST.cpu.arch == "x86_64"
# Where ONNX Runtime's U8S8 kernels sum in 32 bits (VPDPBUSD, AMX tiles).
EXACT_U8S8 = any(HOST.cpu.has(flag) for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))
x86_only = pytest.mark.skipif(not X86, reason="session.x64quantprecision is compiled out off x86")

K, N = 64, 8


def _saturating_model() -> bytes:
    """One MatMulInteger whose every pair of products is 255 x 127 x 2 = 64,770: past
    int16, so VPMADDUBSW clamps each pair to 32,767."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((K, N), 127, np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["m", K])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", N])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _knobs(level: str, kernel: str) -> dict:
    return ORT.session_knobs({"threads": 1, "graph_opt_level": level, "int8_kernel": kernel})


@x86_only
@pytest.mark.parametrize("level", ["all", "extended", "basic"])
def test_which_kernel_runs(level: str) -> None:
    import onnxruntime as ort

    a = np.full((4, K), 255, np.uint8)
    exact, saturated = 255 * 127 * K, 32767 * K // 2
    got = {}
    for kernel in ("u8s8", "u8u8"):
        session = ort.InferenceSession(_saturating_model(), session_options(_knobs(level, kernel)),
                                       providers=["CPUExecutionProvider"])
        got[kernel] = int(session.run(None, {"a": a})[0][0, 0])
    # U8S8 is exact only with VNNI or AMX; U8U8 always, where ORT runs the transformer
    # that rewrites the weights (level 2 and up: the space offers it only there).
    assert got["u8s8"] == (exact if EXACT_U8S8 else saturated)
    assert got["u8u8"] == (exact if level in ("all", "extended") else got["u8s8"])


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> ModelRef:
    return resolve_model(str(tiny_bert_dir))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("ort-kernel-artifacts"))


def _config(**knobs) -> dict:
    return {"backend": "onnxruntime", "precision": "int8", "quantization": "dynamic", "graph": "unfused",
            "quant_granularity": "per_channel", "reduce_range": False, "threads": 1, "binding": "none", **knobs}


# The weight input of each quantized matrix product ORT may run.
_WEIGHT_INPUT = {"MatMulInteger": 1, "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1, "QLinearMatMul": 3,
                 "QAttention": 1}


def _weight_types(path: Path) -> set[int]:
    """The element types of the weights the optimized graph's quantized matrix products read."""
    import onnx

    graph = onnx.load(str(path)).graph
    types = {init.name: init.data_type for init in graph.initializer}
    return {types[node.input[_WEIGHT_INPUT[node.op_type]]] for node in graph.node if node.op_type in _WEIGHT_INPUT}


@x86_only
@pytest.mark.parametrize("quantization", ["dynamic", "static"])
def test_u8u8_rewrites_the_model_weights(quantization: str, encoder: ModelRef, cache: ArtifactCache,
                                         tmp_path: Path) -> None:
    """On the backend's own int8 graphs: u8u8 leaves no int8 weight in the graph ORT
    runs (every quantized MatMul is U8U8), u8s8 keeps them int8."""
    import onnx
    import onnxruntime as ort

    config = _config(quantization=quantization)
    folder = cache.path(ORT.prepare(encoder, config, cache))
    for kernel, want in (("u8s8", onnx.TensorProto.INT8), ("u8u8", onnx.TensorProto.UINT8)):
        options = session_options(ORT.session_knobs({**config, "int8_kernel": kernel}))
        options.optimized_model_filepath = str(tmp_path / f"{kernel}.onnx")
        ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        assert _weight_types(tmp_path / f"{kernel}.onnx") == {want}, kernel


@x86_only
def test_u8u8_reaches_the_session_and_stays_close(encoder: ModelRef, cache: ArtifactCache) -> None:
    batches = eval_inputs(encoder, DEFAULT_EVAL_TEXTS[:4], 24)
    predictor = ORT.load(encoder, _config(int8_kernel="u8u8"), cache)
    assert predictor.session.get_session_options().get_session_config_entry(X64_QUANT_PRECISION) == "1"
    eager = TORCH.load(encoder, {"precision": "fp32", "threads": 1}, cache)
    for batch in batches:
        w = eager.to_numpy(eager.run(eager.bind(batch)))
        g = predictor.to_numpy(predictor.run(predictor.bind(batch)))
        mask = batch["attention_mask"][..., None]
        pw, pg = (w * mask).sum(1).ravel(), (g * mask).sum(1).ravel()
        assert float(pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg)) > 0.95


def test_default_and_bad_values() -> None:
    assert ORT.session_knobs({"threads": 1})["int8_kernel"] == "u8s8"
    with pytest.raises(UnsupportedConfigError, match="int8_kernel='s8s8'"):
        ORT.session_knobs({"threads": 1, "int8_kernel": "s8s8"})
