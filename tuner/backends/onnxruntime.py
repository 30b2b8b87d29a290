"""ONNX Runtime on the CPU (CPUExecutionProvider).

The recipe is built in cached steps, each its own artifact keyed on its parent's key,
so variants share what they have in common::

    export (fp32, TorchScript exporter)
      ├─ graph=unfused: ORT basic optimizations only (constant folding, no fusions)
      │    ├─ int8 dynamic: quantize_dynamic(per_channel, reduce_range)
      │    └─ int8 static:  quantize_static(QDQ, calibrated on tuner.backends.calibration)
      └─ graph=fused: onnxruntime.transformers BERT fusions (Attention,
           SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)
           ├─ int8 dynamic: quantize_dynamic(...) (Attention becomes QAttention)
           └─ int8 static:  quantize_static(QDQ, ...) on the weight MatMuls

"graph" decides what the int8 quantizer sees: on the unfused graph it quantizes each
MatMul, on the fused one dynamic quantization turns Attention into QAttention, and
static quantization takes the MatMuls left outside the fused attention.

Static int8 fixes each activation's scale at calibration; dynamic int8 computes it
per call. The runtime knobs (session options, not part of the recipe): intra-op
threads, inter-op threads (more than one selects the parallel executor), intra-op
spinning, and the graph optimization level the session applies at load (measurements:
docs/backends/onnxruntime.md).
"""

from __future__ import annotations

import contextlib

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.backends.calibration import calibration_set_id
from tuner.backends.onnx_export import DEFAULT_OPSET, MODEL_FILE, export_onnx
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "int8")
GRAPHS = ("unfused", "fused")
QUANTIZATIONS = ("dynamic", "static")
GRANULARITIES = ("per_tensor", "per_channel")
FFN_DOWN = ("fp32", "int8")
OPT_LEVELS = ("all", "extended", "basic", "disabled")
FUSIONS_FILE = "fusions.json"
# model_type values onnxruntime.transformers' BERT fusions are written for.
_BERT_LIKE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "distilbert": "bert"}


@dataclass
class OrtPredictor:
    session: "ort.InferenceSession"
    input_names: list[str]
    output_name: str

    def bind(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Only what the graph takes (an export without token_type_ids rejects extras).
        return {n: np.ascontiguousarray(inputs[n], dtype=np.int64) for n in self.input_names}

    def run(self, bound: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output_name], bound)[0]

    def to_numpy(self, output: np.ndarray) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        recipe: dict[str, Any] = {
            "precision": precision,
            "graph": _config.choice(config, "graph", GRAPHS, self.name),
            "opset": DEFAULT_OPSET,
        }
        if precision == "int8":
            # ORT's own defaults when the space leaves them out; "dynamic" is what an
            # int8 config meant before static int8 existed.
            recipe["quantization"] = _config.choice(config, "quantization", QUANTIZATIONS, self.name, default="dynamic")
            recipe["quant_granularity"] = _config.choice(
                config, "quant_granularity", GRANULARITIES, self.name, default="per_tensor"
            )
            recipe["reduce_range"] = _config.choice(config, "reduce_range", (False, True), self.name, default=False)
            if recipe["quantization"] == "static":
                recipe["ffn_down"] = _config.choice(config, "ffn_down", FFN_DOWN, self.name, default="fp32")
        return recipe

    def session_knobs(self, config: dict[str, Any]) -> dict[str, Any]:
        """The runtime knobs of ``config`` (not part of the recipe), ORT's defaults filled in."""
        inter = config.get("inter_op_threads", 1)
        if isinstance(inter, bool) or not isinstance(inter, int) or inter < 1:
            raise UnsupportedConfigError(f"{self.name}: inter_op_threads must be an integer >= 1, got {inter!r}")
        return {
            "threads": _config.threads(config, self.name),
            # ORT runs the parallel executor with one inter-op thread as the sequential
            # one (and says so in the session's options): one knob covers both.
            "execution_mode": "parallel" if inter > 1 else "sequential",
            "inter_op_threads": inter,
            "intra_op_spinning": _config.choice(config, "intra_op_spinning", (True, False), self.name, default=True),
            "graph_opt_level": _config.choice(config, "graph_opt_level", OPT_LEVELS, self.name, default="all"),
        }

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        self.session_knobs(config)
        return self.artifact(model, self.recipe(config), cache).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OrtPredictor:
        knobs = self.session_knobs(config)
        folder = self.artifact(model, self.recipe(config), cache)
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / MODEL_FILE), session_options(knobs),
                                       providers=["CPUExecutionProvider"])
        check_session(session, knobs)
        return OrtPredictor(
            session=session,
            input_names=[i.name for i in session.get_inputs()],
            output_name=session.get_outputs()[0].name,
        )

    def threads_in_use(self, predictor: Any) -> int | None:
        # ORT exposes no live pool size; the session's own copy of its options is the
        # closest thing to "what it got" (0 would mean "ORT's default").
        return int(predictor.session.get_session_options().intra_op_num_threads)

    # --- the cached steps ----------------------------------------------------------

    def artifact(self, model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
        """The folder of ``recipe``'s graph (``MODEL_FILE``), built with its parents if
        missing (also what onnxruntime_openvino runs)."""
        exported = cache.get_or_build(
            model,
            {"step": "onnx-export", "exporter": "torchscript", "attn": "eager", "opset": recipe["opset"]},
            lambda out: export_onnx(model, out, opset=recipe["opset"]),
        )
        if recipe["graph"] == "fused":
            graph = cache.get_or_build(
                model,
                {"step": "ort-fuse", "parent": exported.name, "opt_level": 0},
                lambda out: _fuse(model, exported / MODEL_FILE, out),
            )
        else:
            graph = cache.get_or_build(
                model,
                {"step": "ort-basic", "parent": exported.name},
                lambda out: _basic_optimize(exported / MODEL_FILE, out),
            )
        if recipe["precision"] == "fp32":
            return graph
        per_channel = recipe["quant_granularity"] == "per_channel"
        if recipe["quantization"] == "static":
            return cache.get_or_build(
                model,
                {
                    "step": "ort-quantize-static",
                    "parent": graph.name,
                    "format": "QDQ",
                    "matmuls": "weights",  # see _weight_matmuls
                    "activation_type": "QUInt8",
                    "weight_type": "QInt8",
                    "per_channel": per_channel,
                    "reduce_range": recipe["reduce_range"],
                    # Min/max ranges. The 99.999th-percentile calibrator gave the same
                    # accuracy on MiniLM (docs/backends/onnxruntime.md), so it is no knob.
                    "calibration": "minmax",
                    "calibration_set": calibration_set_id(),
                    "ffn_down": recipe["ffn_down"],
                },
                lambda out: _quantize_static(model, graph / MODEL_FILE, out, recipe),
            )
        return cache.get_or_build(
            model,
            {
                "step": "ort-quantize-dynamic",
                "parent": graph.name,
                "weight_type": "QInt8",
                "per_channel": per_channel,
                "reduce_range": recipe["reduce_range"],
            },
            lambda out: _quantize(graph / MODEL_FILE, out, recipe),
        )


def check_session(session: "ort.InferenceSession", knobs: dict[str, Any]) -> None:
    """Raise when the session did not take what was asked: ORT adjusts options quietly
    (a parallel executor with one inter-op thread becomes sequential)."""
    got = session.get_session_options()
    want = session_options(knobs)
    differences = [
        f"{name}={getattr(got, name)} (asked {getattr(want, name)})"
        for name in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level")
        if getattr(got, name) != getattr(want, name)
    ]
    if differences:
        raise UnsupportedConfigError(f"onnxruntime session runs with {', '.join(differences)}")


def session_options(knobs: dict[str, Any]) -> "ort.SessionOptions":
    """SessionOptions for ``OnnxRuntimeBackend.session_knobs``'s output."""
    import onnxruntime as ort

    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = knobs["threads"]
    options.inter_op_num_threads = knobs["inter_op_threads"]
    parallel = knobs["execution_mode"] == "parallel"
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[knobs["graph_opt_level"]]
    spin = "1" if knobs["intra_op_spinning"] else "0"
    # Spinning keeps pool threads busy-waiting between ops (lower latency, burnt CPU);
    # the inter-op pool follows the same choice when there is one.
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    if parallel:
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


def _basic_optimize(source: Path, out: Path) -> None:
    """Constant folding and redundant-node removal only: ORT's BASIC level has none of
    the transformer fusions (those start at EXTENDED), so the quantizer sees plain MatMuls."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out / MODEL_FILE)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _fuse(model: "ModelRef", source: Path, out: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    # AutoConfig maps each family's names (DistilBERT's n_heads/dim) to the common ones.
    config = AutoConfig.from_pretrained(model.path, local_files_only=True)
    model_type = _BERT_LIKE.get(config.model_type)
    if model_type is None:
        raise UnsupportedConfigError(
            f"graph=fused: onnxruntime.transformers has no BERT fusions for model_type {config.model_type!r}"
        )
    # opt_level 0: only the Python fusions, no ORT pass that would bake this CPU's
    # layout choices into the file (the session applies those at load).
    optimized = optimize_model(
        str(source),
        model_type=model_type,
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=0,
        use_gpu=False,
    )
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    if not stats.get("Attention") and not stats.get("MultiHeadAttention"):
        # A "fused" graph without fused attention would be the unfused one under
        # another name and mislead the study.
        raise UnsupportedConfigError(f"graph=fused: the attention fusion matched nothing in this export ({stats})")
    optimized.save_model_to_file(str(out / MODEL_FILE))
    (out / FUSIONS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True))


class _DropPreprocessAdvice(logging.Filter):
    """quantize_dynamic logs "Please consider to run pre-processing" on the root logger
    each time. Its pre-processing is shape inference plus ORT's basic optimizations:
    the unfused graph already had the latter, and the contrib ops of the fused graph
    are typed by DefaultTensorType below."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(source: Path, out: Path, recipe: dict[str, Any]) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice_filter = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice_filter)
    try:
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
    finally:
        logging.getLogger().removeFilter(advice_filter)


# The MatMuls static int8 quantizes: those with a constant weight, named one by one
# (the QDQ quantizer ignores MatMulConstBOnly and would also take attention's two
# activation-by-activation MatMuls, QK^T and softmax x V, whose softmax output and
# scores one calibrated scale represents badly; they carry a small share of the FLOPs
# at the lengths served).
QUANTIZATION_FILE = "quantization.json"


def _weight_matmuls(graph: "onnx.GraphProto") -> dict[str, tuple[int, ...]]:
    """MatMul node name -> the shape of its constant weight."""
    from onnx import numpy_helper

    shapes = {init.name: tuple(numpy_helper.to_array(init).shape) for init in graph.initializer}
    return {n.name: shapes[n.input[1]] for n in graph.node
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in shapes}


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


def _quantize_static(model: "ModelRef", source: Path, out: Path, recipe: dict[str, Any]) -> None:
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
        quant_pre_process(str(source), str(typed), skip_optimization=True,
                          skip_symbolic_shape=recipe["graph"] != "fused")
    graph = onnx.load(str(typed), load_external_data=False).graph
    names = [i.name for i in graph.input]
    rows = calibration_inputs(model, names)
    weights = _weight_matmuls(graph)
    excluded = _ffn_down_nodes(model, weights) if recipe["ffn_down"] == "fp32" else []
    chosen = [name for name in weights if name not in excluded]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter(rows)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._rows, None)

    advice_filter = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice_filter)
    try:
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
        logging.getLogger().removeFilter(advice_filter)
        typed.unlink(missing_ok=True)
    stats = _static_stats(onnx.load(str(out / MODEL_FILE), load_external_data=False).graph)
    if stats["int8_matmuls"] == 0:
        raise UnsupportedConfigError(
            f"int8 static: no MatMul got quantized activations in this graph ({stats}); it would run fp32"
        )
    stats["excluded"] = excluded
    (out / QUANTIZATION_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True))


def _static_stats(graph: "onnx.GraphProto") -> dict[str, Any]:
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
    return {"int8_matmuls": int8, "fp32_matmuls": fp32,
            "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in graph.node)}
