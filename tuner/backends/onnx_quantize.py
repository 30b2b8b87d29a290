"""int8 quantization of an ONNX graph with onnxruntime.quantization: the last step of
the graph pipeline (tuner.backends.onnx_graph).

dynamic  quantize_dynamic: weights int8, each activation's scale computed per call.
static   quantize_static, QDQ: activation scales fixed at calibration (min/max, on
         tuner.backends.calibration's text), on the weight MatMuls only.

Imports onnx and onnxruntime inside the functions: a worker whose graph is cached
never imports the quantizer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.backends.onnx_export import MODEL_FILE
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import onnx

    from tuner.model import ModelRef

__all__ = ["QUANTIZATION_FILE", "quantize_dynamic_graph", "quantize_static_graph", "static_stats", "weight_matmuls"]

# What a static int8 artifact holds besides the graph: the MatMuls it quantized.
QUANTIZATION_FILE = "quantization.json"


class _DropPreprocessAdvice(logging.Filter):
    """quantize_dynamic logs "Please consider to run pre-processing" on the root logger
    each time. Its pre-processing is shape inference plus ORT's basic optimizations:
    the unfused graph already had the latter, and the contrib ops of the fused graph
    are typed by DefaultTensorType below."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _no_preprocess_advice() -> Iterator[None]:
    advice_filter = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice_filter)


def quantize_dynamic_graph(source: Path, out: Path, recipe: dict[str, Any]) -> None:
    """``out/MODEL_FILE``: ``source`` with int8 weights and per-call activation scales."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _no_preprocess_advice():
        quantize_dynamic(
            str(source),
            str(out / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=recipe["quant_granularity"] == "per_channel",
            reduce_range=recipe["reduce_range"],
            # Shape inference knows no contrib ops (Attention, SkipLayerNormalization),
            # so the fused graph's tensors have no type without this; all are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


# The MatMuls static int8 quantizes: those with a constant weight, named one by one
# (the QDQ quantizer ignores MatMulConstBOnly and would also take attention's two
# activation-by-activation MatMuls, QK^T and softmax x V, whose softmax output and
# scores one calibrated scale represents badly; they carry a small share of the FLOPs
# at the lengths served).
def weight_matmuls(graph: "onnx.GraphProto") -> dict[str, tuple[int, ...]]:
    """MatMul node name -> the shape of its constant weight."""
    from onnx import numpy_helper

    shapes = {init.name: tuple(numpy_helper.to_array(init).shape) for init in graph.initializer}
    return {
        n.name: shapes[n.input[1]]
        for n in graph.node
        if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in shapes
    }


def _ffn_down_nodes(model: "ModelRef", weights: dict[str, tuple[int, ...]]) -> list[str]:
    """The MatMuls of the FFN down-projection (intermediate -> hidden): their input is
    the GELU output, where BERT-like models keep their outlier activations, which one
    static per-tensor scale cannot cover."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model.path, local_files_only=True)
    # DistilBERT calls it hidden_dim; BERT, RoBERTa, ELECTRA, MiniLM intermediate_size.
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)
    if not isinstance(intermediate, int):
        raise UnsupportedConfigError(f"ffn_down=fp32: {config.model_type} has no intermediate_size to find the FFN by")
    nodes = [name for name, shape in weights.items() if len(shape) == 2 and shape[0] == intermediate]
    if not nodes:
        raise UnsupportedConfigError("ffn_down=fp32: no MatMul with an intermediate -> hidden weight in this graph")
    return nodes


def quantize_static_graph(model: "ModelRef", source: Path, out: Path, recipe: dict[str, Any]) -> None:
    """``out/MODEL_FILE``: ``source`` with QDQ int8 weight MatMuls, activation ranges
    calibrated; ``out/QUANTIZATION_FILE`` says how many MatMuls really became int8."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tuner.backends.calibration import calibration_inputs

    # Symbolic shape inference knows the contrib ops (Attention, BiasGelu, ...). Without
    # it the fused graph's tensors have no type, the calibrator collects none of them,
    # and quantize_static quietly writes weights-only QDQ: fp32 compute under an int8 name.
    # The unfused graph has standard ops only, which ONNX's own inference types; the
    # symbolic one gives up on its dynamic Reshapes ("Incomplete symbolic shape inference").
    typed = out / "typed.onnx"
    # When symbolic inference gives up, ORT saves its partial model (with a weights
    # file) into the current directory: let it write into a scratch folder instead.
    with tempfile.TemporaryDirectory(dir=out) as scratch, contextlib.chdir(scratch):
        quant_pre_process(
            str(source), str(typed), skip_optimization=True, skip_symbolic_shape=recipe["graph"] != "fused"
        )
    graph = onnx.load(str(typed), load_external_data=False).graph
    names = [i.name for i in graph.input]
    rows = calibration_inputs(model, names)
    weights = weight_matmuls(graph)
    excluded = _ffn_down_nodes(model, weights) if recipe["ffn_down"] == "fp32" else []
    chosen = [name for name in weights if name not in excluded]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter(rows)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._rows, None)

    try:
        with _no_preprocess_advice():
            quantize_static(
                str(typed),
                str(out / MODEL_FILE),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=chosen,
                per_channel=recipe["quant_granularity"] == "per_channel",
                reduce_range=recipe["reduce_range"],
                # x86 int8 kernels multiply uint8 activations by int8 weights (ORT's advice
                # for CPUs with and without VNNI alike).
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True},  # honoured by the QOperator path only
            )
    finally:
        typed.unlink(missing_ok=True)
    stats = static_stats(onnx.load(str(out / MODEL_FILE), load_external_data=False).graph)
    if stats["int8_matmuls"] == 0:
        raise UnsupportedConfigError(
            f"int8 static: no MatMul got quantized activations in this graph ({stats}); it would run fp32"
        )
    stats["excluded"] = excluded
    (out / QUANTIZATION_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True))


def static_stats(graph: "onnx.GraphProto") -> dict[str, Any]:
    """How many MatMuls read both a quantized activation and a quantized weight (real
    int8 work once ORT fuses the QDQ pairs), and how many stayed fp32."""
    producer = {out: node.op_type for node in graph.node for out in node.output}
    int8 = fp32 = 0
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        if all(producer.get(name) == "DequantizeLinear" for name in node.input[:2]):
            int8 += 1
        else:
            fp32 += 1
    return {
        "int8_matmuls": int8,
        "fp32_matmuls": fp32,
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in graph.node),
    }
