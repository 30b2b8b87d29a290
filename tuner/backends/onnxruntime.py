"""ONNX Runtime on the CPU (CPUExecutionProvider).

The graph it runs is built by the shared pipeline in ``tuner.backends.onnx_graph``
(export, then BERT fusions or ORT's basic optimizations, then int8 quantization, each
step cached); the recipe decides which graph. The runtime knobs (session options, not
part of the recipe): intra-op threads, inter-op threads (more than one selects the
parallel executor), intra-op spinning, and the graph optimization level the session
applies at load (measurements: docs/backends/onnxruntime.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.backends.onnx_export import MODEL_FILE
from tuner.backends.onnx_graph import graph_recipe, ort_graph
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import onnxruntime as ort

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

OPT_LEVELS = ("all", "extended", "basic", "disabled")
# x86 int8 GEMM: ORT's U8S8, or U8U8 through session.x64quantprecision (int8_kernel).
INT8_KERNELS = ("u8s8", "u8u8")
X64_QUANT_PRECISION = "session.x64quantprecision"


@dataclass
class OrtPredictor:
    session: "ort.InferenceSession"
    input_names: list[str]
    output_name: str
    timings: dict[str, float] = field(default_factory=dict)

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
        return graph_recipe(config, self.name)

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
            "int8_kernel": _config.choice(config, "int8_kernel", INT8_KERNELS, self.name, default="u8s8"),
        }

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        self.session_knobs(config)
        return ort_graph(model, self.recipe(config), cache.for_backend(self.name)).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OrtPredictor:
        knobs = self.session_knobs(config)
        folder = ort_graph(model, self.recipe(config), cache.for_backend(self.name))
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(folder / MODEL_FILE), session_options(knobs), providers=["CPUExecutionProvider"]
        )
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
    if knobs["int8_kernel"] == "u8u8":
        try:
            precision = got.get_session_config_entry(X64_QUANT_PRECISION)
        except RuntimeError:  # "does not have configuration with key"
            precision = "unset"
        if precision != "1":
            differences.append(f"{X64_QUANT_PRECISION}={precision} (asked 1)")
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
    if knobs["int8_kernel"] == "u8u8":
        # x86: a level-2 transformer turns the int8 weights of the quantized MatMuls into
        # uint8, so MLAS runs its exact U8U8 kernels instead of U8S8 (VPMADDUBSW saturates
        # without VNNI; with VNNI or AMX, U8S8 is exact and faster).
        options.add_session_config_entry(X64_QUANT_PRECISION, "1")
    return options
