"""ONNX Runtime on the CPU (CPUExecutionProvider).

The recipe is built in cached steps, each its own artifact keyed on its parent's key,
so variants share what they have in common::

    export (fp32, TorchScript exporter)
      ├─ graph=unfused: ORT basic optimizations only (constant folding, no fusions)
      │    └─ precision=int8: quantize_dynamic(per_channel, reduce_range)
      └─ graph=fused: onnxruntime.transformers BERT fusions (Attention,
           SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)
           └─ precision=int8: quantize_dynamic(...) (Attention becomes QAttention)

"graph" decides what the int8 quantizer sees: on the unfused graph it quantizes each
MatMul (MatMulInteger), on the fused one it turns Attention into QAttention. The
session always runs ORT_ENABLE_ALL; ORT's own session-time fusions cannot undo that
choice because quantization has already happened (measurements: docs/backends/onnxruntime.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.backends.onnx_export import DEFAULT_OPSET, MODEL_FILE, export_onnx
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import onnxruntime as ort

    from tuner.artifacts.cache import ArtifactCache
    from tuner.trial.spec import ModelRef

PRECISIONS = ("fp32", "int8")
GRAPHS = ("unfused", "fused")
GRANULARITIES = ("per_tensor", "per_channel")
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
            # ORT's own defaults when the space leaves them out.
            recipe["quant_granularity"] = _config.choice(
                config, "quant_granularity", GRANULARITIES, self.name, default="per_tensor"
            )
            recipe["reduce_range"] = _config.choice(config, "reduce_range", (False, True), self.name, default=False)
        return recipe

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        _config.threads(config, self.name)
        return self._artifact(model, self.recipe(config), cache).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OrtPredictor:
        threads = _config.threads(config, self.name)
        folder = self._artifact(model, self.recipe(config), cache)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
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

    def _artifact(self, model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
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
        return cache.get_or_build(
            model,
            {
                "step": "ort-quantize-dynamic",
                "parent": graph.name,
                "weight_type": "QInt8",
                "per_channel": recipe["quant_granularity"] == "per_channel",
                "reduce_range": recipe["reduce_range"],
            },
            lambda out: _quantize(graph / MODEL_FILE, out, recipe),
        )


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
