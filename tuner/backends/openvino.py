"""OpenVINO on the CPU: the ONNX export converted to OpenVINO IR once, compiled per trial.

Cached steps (each keyed on its parent, as for onnxruntime)::

    onnx-export (shared with the onnxruntime backend)
      └─ ov-convert: ov.convert_model + ov.save_model(compress_to_fp16=False)
           └─ precision=int8: nncf.quantize(model_type=TRANSFORMER, preset), calibrated on
              tuner.backends.calibration (not the accuracy guard's sentences)

Runtime knobs, set explicitly at compile time and read back from the compiled model
(a knob OpenVINO did not take is an unsupported configuration, never a result):

  precision         fp32 / bf16 -> INFERENCE_PRECISION_HINT f32 / bf16. Always set:
                    OpenVINO defaults to bf16 on CPUs with native bf16, which would
                    change accuracy without anyone asking. int8 runs the quantized IR
                    with f32 for the layers NNCF left in floating point.
  performance_hint  LATENCY / THROUGHPUT (PERFORMANCE_HINT).
  streams           NUM_STREAMS, with the THROUGHPUT hint only (LATENCY means one stream).
  cpu_pinning       ENABLE_CPU_PINNING.
  threads           INFERENCE_NUM_THREADS (all streams together).

A trial times one synchronous request, which runs on one stream: with N streams it
gets threads / N of them. The THROUGHPUT hint pays off with concurrent requests,
which a latency trial does not make (docs/backends/openvino.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.backends.calibration import calibration_set_id
from tuner.backends.onnx_export import DEFAULT_OPSET, MODEL_FILE, exported
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import openvino as ov

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "bf16", "int8")
HINTS = ("latency", "throughput")
PRESETS = ("performance", "mixed")
IR_FILE = "model.xml"
# What the compiled model must report for each precision (INFERENCE_PRECISION_HINT).
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


@dataclass
class OpenVinoPredictor:
    compiled: "ov.CompiledModel"
    request: "ov.InferRequest"
    input_names: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    def bind(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.ascontiguousarray(inputs[n], dtype=np.int64) for n in self.input_names}

    def run(self, bound: dict[str, np.ndarray]) -> "ov.Tensor":
        # share_inputs: no copy of the (already contiguous int64) arrays per call. The
        # output tensor is the request's own buffer, valid until the next call.
        self.request.infer(bound, share_inputs=True)
        return self.request.get_output_tensor(0)

    def to_numpy(self, output: "ov.Tensor") -> np.ndarray:
        return np.array(output.data, dtype=np.float32, copy=True)


class OpenVinoBackend:
    name = "openvino"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        # bf16 is a compile-time hint on the f32 IR: only int8 has its own artifact.
        recipe: dict[str, Any] = {"ir": "int8" if precision == "int8" else "f32", "opset": DEFAULT_OPSET}
        if precision == "int8":
            recipe["quant_preset"] = _config.choice(config, "quant_preset", PRESETS, self.name, default="mixed")
        return recipe

    def compile_options(self, config: dict[str, Any]) -> dict[str, Any]:
        """The properties ``load`` compiles with, by OpenVINO name, as it reports them back."""
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        hint = _config.choice(config, "performance_hint", HINTS, self.name, default="latency")
        options: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision],
            "PERFORMANCE_HINT": hint.upper(),
            "INFERENCE_NUM_THREADS": _config.threads(config, self.name),
            "ENABLE_CPU_PINNING": _config.choice(config, "cpu_pinning", (True, False), self.name, default=True),
        }
        if hint == "throughput":
            streams = config.get("streams", 1)
            if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
                raise UnsupportedConfigError(f"{self.name}: streams must be an integer >= 1, got {streams!r}")
            threads = options["INFERENCE_NUM_THREADS"]
            if streams > threads:
                raise UnsupportedConfigError(
                    f"{self.name}: {streams} streams need at least as many threads, got {threads}"
                )
            options["NUM_STREAMS"] = streams
        else:
            options["NUM_STREAMS"] = 1  # what LATENCY means; set so the read-back can check it
        return options

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        self.compile_options(config)
        return self._artifact(model, self.recipe(config), cache.for_backend(self.name)).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OpenVinoPredictor:
        options = self.compile_options(config)
        folder = self._artifact(model, self.recipe(config), cache.for_backend(self.name))
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(folder / IR_FILE)), "CPU", _ov_properties(options))
        _check_compiled(compiled, options)
        return OpenVinoPredictor(
            compiled=compiled,
            request=compiled.create_infer_request(),
            input_names=[port.get_any_name() for port in compiled.inputs],
        )

    def threads_in_use(self, predictor: Any) -> int | None:
        return int(predictor.compiled.get_property("INFERENCE_NUM_THREADS"))

    # --- the cached steps ----------------------------------------------------------

    def _artifact(self, model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
        export = exported(model, cache, recipe["opset"])
        # ``cache`` is keyed on this backend's libraries (search_spaces/openvino.toml):
        # the IR depends on OpenVINO's converter, int8 also on NNCF.
        ir = cache.get_or_build(
            model,
            {"step": "ov-convert", "parent": export.name, "fp16": False},
            lambda out: _convert(export / MODEL_FILE, out),
        )
        if recipe["ir"] == "f32":
            return ir
        return cache.get_or_build(
            model,
            {
                "step": "ov-nncf-int8",
                "parent": ir.name,
                "preset": recipe["quant_preset"],
                "model_type": "transformer",
                "calibration_set": calibration_set_id(),
            },
            lambda out: _quantize(model, ir / IR_FILE, out, recipe["quant_preset"]),
        )


def _ov_properties(options: dict[str, Any]) -> dict[str, Any]:
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {
        hints.inference_precision: options["INFERENCE_PRECISION_HINT"],
        hints.performance_mode: getattr(hints.PerformanceMode, options["PERFORMANCE_HINT"]),
        props.inference_num_threads: options["INFERENCE_NUM_THREADS"],
        props.num_streams: options["NUM_STREAMS"],
        hints.enable_cpu_pinning: options["ENABLE_CPU_PINNING"],
    }


def _check_compiled(compiled: "ov.CompiledModel", options: dict[str, Any]) -> None:
    """Raise when the compiled model did not take what was asked (OpenVINO adjusts some
    properties silently, e.g. pinning where the process may not set affinity)."""
    got: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
        "PERFORMANCE_HINT": str(compiled.get_property("PERFORMANCE_HINT")),
        "INFERENCE_NUM_THREADS": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "NUM_STREAMS": int(compiled.get_property("NUM_STREAMS")),
        "ENABLE_CPU_PINNING": bool(compiled.get_property("ENABLE_CPU_PINNING")),
    }
    # Element types print as "<Type: 'float32'>" or "f32" depending on the version.
    aliases = {"f32": ("f32", "float32"), "bf16": ("bf16", "bfloat16")}
    differences = []
    for key, want in options.items():
        have = got[key]
        if key == "INFERENCE_PRECISION_HINT":
            same = any(alias in have for alias in aliases[want])
        elif key == "PERFORMANCE_HINT":
            same = have.upper().endswith(want)
        else:
            same = have == want
        if not same:
            differences.append(f"{key}={have} (asked {want})")
    if differences:
        raise UnsupportedConfigError(f"openvino compiled the model with {', '.join(differences)}")


def _convert(source: Path, out: Path) -> None:
    import openvino as ov

    model = ov.convert_model(str(source))
    # save_model halves the weights to fp16 by default; f32 must stay f32 (bf16 and
    # int8 are decided later, from this file).
    ov.save_model(model, str(out / IR_FILE), compress_to_fp16=False)


def _quantize(model: "ModelRef", source: Path, out: Path, preset: str) -> None:
    import nncf
    import openvino as ov

    from tuner.backends.calibration import calibration_inputs

    nncf.set_log_level(logging.ERROR)  # progress bars and INFO lines belong to no one here
    ir = ov.Core().read_model(str(source))
    names = [port.get_any_name() for port in ir.inputs]
    rows = calibration_inputs(model, names)
    quantized = nncf.quantize(
        ir,
        nncf.Dataset(rows),
        # MIXED: symmetric weights, asymmetric activations (GELU and attention outputs
        # are not centred on zero); PERFORMANCE: symmetric both.
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        # TRANSFORMER: SmoothQuant on the MatMuls and the transformer ignored patterns
        # (softmax, layer norms stay in floating point).
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(rows),
    )
    ov.save_model(quantized, str(out / IR_FILE), compress_to_fp16=False)
