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
                    change accuracy without anyone asking. int8 runs the quantized IR.
  int8_remainder    int8 only: the hint for the layers NNCF left in floating point,
                    f32 (the default), bf16 or f16.
  performance_hint  LATENCY / THROUGHPUT (PERFORMANCE_HINT).
  streams           NUM_STREAMS, with the THROUGHPUT hint only (LATENCY means one stream).
  cpu_pinning       ENABLE_CPU_PINNING.
  threads           INFERENCE_NUM_THREADS (all streams together).
  shapes            dynamic: the IR as converted ([?, ?] inputs), compiled in ``load``.
                    static: the model reshaped to the input's exact [batch, seq] and
                    compiled when an input of a new shape is bound (``compile_s``), one
                    compiled model at a time. The IR artifact is the same for both.

Besides the properties, the compiled model's runtime graph is read back: an int8
config must run some matrix products in i8/u8, a bf16 or f16 hint must run some layer
in that type, and an f32 one none (``_check_runtime``).

A trial times one synchronous request, which runs on one stream: with N streams it
gets threads / N of them. The THROUGHPUT hint pays off with concurrent requests,
which a latency trial does not make (docs/backends/openvino.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
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
# INFERENCE_PRECISION_HINT for what NNCF left in floating point (int8 only).
REMAINDERS = ("f32", "bf16", "f16")
HINTS = ("latency", "throughput")
PRESETS = ("performance", "mixed")
SHAPES = ("dynamic", "static")
IR_FILE = "model.xml"
# What the compiled model must report for each precision (INFERENCE_PRECISION_HINT);
# int8's comes from int8_remainder.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}
# Element type names as OpenVINO prints them ("<Type: 'bfloat16'>") -> as it parses them.
_TYPE_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "int8": "i8", "uint8": "u8"}
# Runtime layer types that hold a model's matrix products.
_MATMULS = frozenset({"FullyConnected", "MatMul", "Convolution"})


@dataclass
class _Bound:
    """An input bound to the request that runs it (static shapes: one per shape)."""

    request: "ov.InferRequest"
    arrays: dict[str, np.ndarray]


class _StaticCompiler:
    """Reshapes a copy of the IR to one input shape and compiles it, checked."""

    def __init__(self, core: "ov.Core", model: "ov.Model", options: dict[str, Any], precision: str) -> None:
        self.core, self.model, self.options, self.precision = core, model, options, precision

    def compile(self, shapes: dict[str, tuple[int, ...]]) -> "ov.CompiledModel":
        import openvino as ov

        model = self.model.clone()
        model.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
        return _compile(self.core, model, self.options, self.precision)


@dataclass
class OpenVinoPredictor:
    input_names: list[str]
    # Static shapes: None until the first input is bound, then the model compiled for
    # the last shape bound.
    compiled: "ov.CompiledModel | None" = None
    request: "ov.InferRequest | None" = None
    static: _StaticCompiler | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _shapes: dict[str, tuple[int, ...]] | None = None

    def bind(self, inputs: dict[str, np.ndarray]) -> _Bound:
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=np.int64) for n in self.input_names}
        if self.static is not None:
            shapes = {n: a.shape for n, a in arrays.items()}
            if shapes != self._shapes:
                # One compiled model at a time: the one for the timed shape is what a
                # deployment would hold (the accuracy check's batch-1 inputs come first).
                started = time.perf_counter()
                self.compiled = self.request = None
                self.compiled = self.static.compile(shapes)
                self.request = self.compiled.create_infer_request()
                self._shapes = shapes
                self.timings["compile_s"] = self.timings.get("compile_s", 0.0) + time.perf_counter() - started
        assert self.request is not None
        return _Bound(self.request, arrays)

    def run(self, bound: _Bound) -> "ov.Tensor":
        # share_inputs: no copy of the (already contiguous int64) arrays per call. The
        # output tensor is the request's own buffer, valid until the next call.
        bound.request.infer(bound.arrays, share_inputs=True)
        return bound.request.get_output_tensor(0)

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
        if precision == "int8":
            inference = _config.choice(config, "int8_remainder", REMAINDERS, self.name, default="f32")
        else:
            inference = _INFERENCE_PRECISION[precision]
        hint = _config.choice(config, "performance_hint", HINTS, self.name, default="latency")
        options: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": inference,
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

    def shapes(self, config: dict[str, Any]) -> str:
        """dynamic, or static: the model reshaped to each input's shape before compiling.
        A compile-time choice: the IR artifact is the same."""
        return _config.choice(config, "shapes", SHAPES, self.name, default="dynamic")

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        self.compile_options(config)
        self.shapes(config)
        return self._artifact(model, self.recipe(config), cache.for_backend(self.name)).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OpenVinoPredictor:
        options = self.compile_options(config)
        shapes = self.shapes(config)
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        folder = self._artifact(model, self.recipe(config), cache.for_backend(self.name))
        import openvino as ov

        core = ov.Core()
        ir = core.read_model(str(folder / IR_FILE))
        names = [port.get_any_name() for port in ir.inputs]
        if shapes == "static":
            # Compiled, and checked, when the first input is bound: only then is its shape known.
            return OpenVinoPredictor(input_names=names, static=_StaticCompiler(core, ir, options, precision))
        compiled = _compile(core, ir, options, precision)
        return OpenVinoPredictor(input_names=names, compiled=compiled, request=compiled.create_infer_request())

    def threads_in_use(self, predictor: Any) -> int | None:
        if predictor.compiled is None:  # static shapes, nothing bound yet
            return None
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


def _compile(core: "ov.Core", model: "ov.Model", options: dict[str, Any], precision: str) -> "ov.CompiledModel":
    compiled = core.compile_model(model, "CPU", _ov_properties(options))
    _check_compiled(compiled, options)
    _check_runtime(runtime_precisions(compiled), precision, options["INFERENCE_PRECISION_HINT"])
    return compiled


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
    differences = []
    for key, want in options.items():
        have = got[key]
        if key == "INFERENCE_PRECISION_HINT":
            same = _element_type(have) == want
        elif key == "PERFORMANCE_HINT":
            same = have.upper().endswith(want)
        else:
            same = have == want
        if not same:
            differences.append(f"{key}={have} (asked {want})")
    if differences:
        raise UnsupportedConfigError(f"openvino compiled the model with {', '.join(differences)}")


def _element_type(text: str) -> str:
    """An element type as OpenVINO parses it ("bf16"), from how it prints it: "<Type:
    'bfloat16'>" or "bf16" depending on the version. Exact: "f16" is not in "bf16"."""
    quoted = re.search(r"'(\w+)'", text)
    name = quoted.group(1) if quoted else text.strip()
    return _TYPE_NAMES.get(name, name)


def runtime_precisions(compiled: "ov.CompiledModel") -> Counter[tuple[str, str]]:
    """(layer type, precision it executes in) -> how many, from the compiled model's
    runtime graph: what the plugin really runs, after its own transformations."""
    counts: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        counts[(str(info["layerType"].value), _element_type(str(info["runtimePrecision"].value)))] += 1
    return counts


def _check_runtime(counts: Counter[tuple[str, str]], precision: str, hint: str) -> None:
    """Raise when the runtime graph does not run what the config's name says: int8 with
    no matrix product in i8/u8 (the quantized IR run dequantized), a bf16 or f16 hint
    with no layer in that type, an f32 one with some layer in bf16 or f16."""
    problems = []
    if precision == "int8" and not any(layer in _MATMULS and kind in ("i8", "u8") for layer, kind in counts):
        problems.append("no matrix product runs in int8")
    low = sorted({kind for _, kind in counts if kind in ("bf16", "f16")})
    if hint in ("bf16", "f16") and hint not in low:
        problems.append(f"no layer runs in {hint}")
    if hint == "f32" and low:
        problems.append(f"layers run in {' and '.join(low)}")
    if problems:
        raise UnsupportedConfigError(
            f"openvino compiled the model with INFERENCE_PRECISION_HINT={hint} for precision={precision}, "
            f"but {'; '.join(problems)}"
        )


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
