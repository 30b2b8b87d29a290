"""The ONNX Runtime graph pipeline, shared by the onnxruntime and onnxruntime_openvino
backends: export, then fusion, then quantization, each step its own artifact keyed on
its parent's key, so variants share what they have in common::

    export (fp32, TorchScript exporter; tuner.backends.onnx_export)
      ├─ graph=unfused: ORT basic optimizations only (constant folding, no fusions)
      │    ├─ int8 dynamic: quantize_dynamic(per_channel, reduce_range)
      │    └─ int8 static:  quantize_static(QDQ, calibrated on tuner.backends.calibration)
      └─ graph=fused: onnxruntime.transformers BERT fusions (Attention,
           SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)
           ├─ int8 dynamic: quantize_dynamic(...) (Attention becomes QAttention)
           └─ int8 static:  quantize_static(QDQ, ...) on the weight MatMuls

"graph" decides what the int8 quantizer sees: on the unfused graph it quantizes each
MatMul, on the fused one dynamic quantization turns Attention into QAttention, and
static quantization takes the MatMuls left outside the fused attention (the
quantizers: tuner.backends.onnx_quantize).

The steps after the export are keyed on the asking backend's libraries (``cache`` as
its backend scoped it), so a graph built by another ONNX Runtime build (onnxruntime-
openvino in its environment) is its own artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.backends import _config, onnx_quantize
from tuner.backends.calibration import calibration_set_id
from tuner.backends.onnx_export import DEFAULT_OPSET, MODEL_FILE, exported
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "int8")
GRAPHS = ("unfused", "fused")
QUANTIZATIONS = ("dynamic", "static")
GRANULARITIES = ("per_tensor", "per_channel")
FFN_DOWN = ("fp32", "int8")
FUSIONS_FILE = "fusions.json"
# model_type values onnxruntime.transformers' BERT fusions are written for: their
# export fuses attention in every layer (tests/backends/test_families.py).
_BERT_LIKE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "distilbert": "bert"}
# The encoders tuner runs whose attention the BERT fusions do not match, and why: no
# fused graph for them (their trials are recorded unsupported with this reason), the
# unfused graph and its int8 recipes still run.
_NOT_FUSABLE = {
    "albert": "ALBERT's layers share one set of weights, and the Attention fusion matches only the first layer",
    "mpnet": "MPNet adds a relative position bias to the attention scores, a pattern the Attention fusion "
    "does not match",
}


def graph_recipe(config: dict[str, Any], backend: str) -> dict[str, Any]:
    """The part of ``config`` that decides the graph, ORT's own defaults filled in for
    what it leaves out. Raises UnsupportedConfigError (naming ``backend``) for a value
    the pipeline cannot build."""
    precision = _config.choice(config, "precision", PRECISIONS, backend)
    recipe: dict[str, Any] = {
        "precision": precision,
        "graph": _config.choice(config, "graph", GRAPHS, backend),
        "opset": DEFAULT_OPSET,
    }
    if precision == "int8":
        # "dynamic" is what an int8 config meant before static int8 existed.
        recipe["quantization"] = _config.choice(config, "quantization", QUANTIZATIONS, backend, default="dynamic")
        recipe["quant_granularity"] = _config.choice(
            config, "quant_granularity", GRANULARITIES, backend, default="per_tensor"
        )
        recipe["reduce_range"] = _config.choice(config, "reduce_range", (False, True), backend, default=False)
        if recipe["quantization"] == "static":
            recipe["ffn_down"] = _config.choice(config, "ffn_down", FFN_DOWN, backend, default="fp32")
    return recipe


def ort_graph(model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
    """The folder of ``recipe``'s graph (``MODEL_FILE``; a ``graph_recipe``), built with
    its parents if missing."""
    if recipe["graph"] == "fused":
        fusion_type(model)  # a family the fusions do not match is refused before the export
    export = exported(model, cache, recipe["opset"])
    if recipe["graph"] == "fused":
        graph = cache.get_or_build(
            model,
            {"step": "ort-fuse", "parent": export.name, "opt_level": 0},
            lambda out: _fuse(model, export / MODEL_FILE, out),
        )
    else:
        graph = cache.get_or_build(
            model,
            {"step": "ort-basic", "parent": export.name},
            lambda out: _basic_optimize(export / MODEL_FILE, out),
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
                "matmuls": "weights",  # see onnx_quantize.weight_matmuls
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
            lambda out: onnx_quantize.quantize_static_graph(model, graph / MODEL_FILE, out, recipe),
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
        lambda out: onnx_quantize.quantize_dynamic_graph(graph / MODEL_FILE, out, recipe),
    )


def fusion_type(model: "ModelRef") -> str:
    """The ``model_type`` onnxruntime.transformers' optimizer fuses ``model`` as; raises
    UnsupportedConfigError, with the reason, for a family its fusions do not match."""
    family = json.loads((Path(model.path) / "config.json").read_text()).get("model_type")
    fused_as = _BERT_LIKE.get(family)
    if fused_as is None:
        why = _NOT_FUSABLE.get(family, "onnxruntime.transformers has no BERT fusions for it")
        raise UnsupportedConfigError(f"graph=fused: not for model_type {family!r}: {why}")
    return fused_as


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
    model_type = fusion_type(model)
    config = AutoConfig.from_pretrained(model.path, local_files_only=True)
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
    fused = stats.get("Attention", 0) + stats.get("MultiHeadAttention", 0)
    layers = int(config.num_hidden_layers)
    if fused < layers:
        # A "fused" graph without fused attention in every layer would be (partly) the
        # unfused one under another name and mislead the study.
        raise UnsupportedConfigError(
            f"graph=fused: the attention fusion matched {fused} of {layers} layers in this export ({stats})"
        )
    optimized.save_model_to_file(str(out / MODEL_FILE))
    (out / FUSIONS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True))
