"""ONNX Runtime with the OpenVINO execution provider (package onnxruntime-openvino).

Runs in its own environment (search_spaces/onnxruntime_openvino.toml): onnxruntime-
openvino installs the same ``onnxruntime`` module as the CPU package, and bundles its
own OpenVINO runtime, so it cannot share the tuner's interpreter. The graphs are the
onnxruntime backend's recipes, built by the shared pipeline (tuner.backends.onnx_graph)
in that environment (its artifacts are keyed on onnxruntime-openvino's version):

  precision=fp32  the unfused fp32 graph.
  precision=int8  the static int8 QDQ graph (unfused, per-channel weights, min/max
                  calibration, FFN down-projections fp32: the recipe that passes the
                  accuracy guard on MiniLM); OpenVINO runs the QDQ pairs as int8.

ORT's own graph optimizations are off (ORT_DISABLE_ALL): OpenVINO optimizes the
subgraphs it takes, and ORT fusions would only hand it contrib ops it does not know.
ONNX Runtime falls back to its CPU provider without a word when a provider cannot
load, so ``load`` checks the session's providers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.backends import _config
from tuner.backends.onnx_export import MODEL_FILE
from tuner.backends.onnx_graph import graph_recipe, ort_graph
from tuner.backends.onnxruntime import OrtPredictor
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PROVIDER = "OpenVINOExecutionProvider"
PRECISIONS = ("fp32", "int8")
# The onnxruntime backend's recipe for each precision here.
_RECIPES: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32", "graph": "unfused"},
    "int8": {
        "precision": "int8",
        "graph": "unfused",
        "quantization": "static",
        "quant_granularity": "per_channel",
        "reduce_range": False,
        "calibration": "minmax",
        "ffn_down": "fp32",
    },
}


class OrtOpenVinoBackend:
    name = "onnxruntime_openvino"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        return graph_recipe(_RECIPES[precision], self.name)

    def provider_options(self, config: dict[str, Any]) -> dict[str, str]:
        return {
            "device_type": "CPU",
            # The int8 graph carries its own precision in its QDQ pairs; FP32 is what
            # everything else computes in.
            "precision": "FP32",
            "num_of_threads": str(_config.threads(config, self.name)),
            "num_streams": "1",
        }

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        self.provider_options(config)
        return ort_graph(model, self.recipe(config), cache.for_backend(self.name)).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OrtPredictor:
        options = self.provider_options(config)
        folder = ort_graph(model, self.recipe(config), cache.for_backend(self.name))
        import onnxruntime as ort

        if PROVIDER not in ort.get_available_providers():
            raise UnsupportedConfigError(
                f"{self.name}: this onnxruntime ({ort.__version__}) has no {PROVIDER}; "
                "run `tuner env create onnxruntime-openvino`"
            )
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # The CPU provider only gets the shape ops ORT keeps for itself (a ConstantOfShape
        # on MiniLM): one thread is plenty, and no second pool competes with OpenVINO's.
        session_options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(folder / MODEL_FILE), session_options, providers=[(PROVIDER, options)])
        if session.get_providers()[0] != PROVIDER:
            raise UnsupportedConfigError(
                f"{self.name}: {PROVIDER} did not load (the session runs {session.get_providers()})"
            )
        return OrtPredictor(
            session=session,
            input_names=[i.name for i in session.get_inputs()],
            output_name=session.get_outputs()[0].name,
        )

    def threads_in_use(self, predictor: Any) -> int | None:
        # The OpenVINO EP reports no provider options back (get_provider_options() is
        # empty for it in 1.24) and its compiled model is not reachable from Python:
        # unknown, so the probe does not compare it.
        return None
