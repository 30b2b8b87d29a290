"""ONNX Runtime on an NVIDIA GPU: the CUDA and TensorRT execution providers, with
IO binding (inputs copied to the device once, the output left there until read).

Runs in its own environment (search_spaces/onnxruntime_cuda.toml: onnxruntime-gpu
installs the same ``onnxruntime`` module as the CPU package, so the two cannot share
one). The export is the CPU backends' (``onnx_export.exported``), cached under this
environment's library versions; its own steps are keyed on onnxruntime-gpu's.

provider:
  cuda      CUDAExecutionProvider.
  tensorrt  TensorrtExecutionProvider (CUDA for what TensorRT does not take); its
            engines are cached in ``<tuner cache>/tensorrt`` so a later trial does not
            rebuild them (a build takes minutes).
precision:
  fp32  the exported graph.
  fp16  cuda: the graph converted by onnxruntime.transformers' float16 converter
        (inputs and outputs kept int64/float32); tensorrt: ``trt_fp16_enable``.

ONNX Runtime falls back to the CPU, silently, when a provider cannot load (a missing
libcudnn, libnvinfer): ``load`` checks the session's providers and refuses that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.backends.onnx_export import DEFAULT_OPSET, MODEL_FILE, exported
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    import onnxruntime as ort

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
PRECISIONS = ("fp32", "fp16")


@dataclass
class OrtCudaPredictor:
    session: "ort.InferenceSession"
    input_names: list[str]
    output_name: str
    timings: dict[str, float] = field(default_factory=dict)

    def bind(self, inputs: dict[str, np.ndarray]) -> "ort.IOBinding":
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name in self.input_names:
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(inputs[name], dtype=np.int64), "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output_name, "cuda", 0)
        return binding

    def run(self, bound: "ort.IOBinding") -> "ort.IOBinding":
        # Synchronous: run_with_iobinding returns once the outputs are written.
        self.session.run_with_iobinding(bound)
        return bound

    def to_numpy(self, output: "ort.IOBinding") -> np.ndarray:
        return np.asarray(output.copy_outputs_to_cpu()[0], dtype=np.float32)


class OrtCudaBackend:
    name = "onnxruntime_cuda"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any]:
        provider = _config.choice(config, "provider", tuple(PROVIDERS), self.name)
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        # TensorRT lowers precision itself; only the CUDA provider needs an fp16 graph.
        graph_fp16 = provider == "cuda" and precision == "fp16"
        return {"provider": provider, "precision": precision, "graph_fp16": graph_fp16, "opset": DEFAULT_OPSET}

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        _config.threads(config, self.name)
        return self._artifact(model, self.recipe(config), cache.for_backend(self.name)).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> OrtCudaPredictor:
        threads = _config.threads(config, self.name)
        recipe = self.recipe(config)
        import onnxruntime as ort

        wanted = PROVIDERS[recipe["provider"]]
        if wanted not in ort.get_available_providers():
            raise UnsupportedConfigError(
                f"{self.name}: onnxruntime {ort.__version__} has no {wanted} "
                f"(available: {', '.join(ort.get_available_providers())}); onnxruntime-gpu provides it"
            )
        folder = self._artifact(model, recipe, cache.for_backend(self.name))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[Any]
        if recipe["provider"] == "tensorrt":
            engines = cache.root.parent / "tensorrt"
            engines.mkdir(parents=True, exist_ok=True)
            providers = [
                (
                    wanted,
                    {
                        "trt_fp16_enable": recipe["precision"] == "fp16",
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(engines),
                    },
                ),
                "CUDAExecutionProvider",
            ]
        else:
            providers = [wanted]
        session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=providers)
        if session.get_providers()[0] != wanted:
            raise UnsupportedConfigError(
                f"{self.name}: {wanted} did not load (the session fell back to {session.get_providers()}); "
                "see the trial's output for the library it could not find"
            )
        return OrtCudaPredictor(session, [i.name for i in session.get_inputs()], session.get_outputs()[0].name)

    def threads_in_use(self, predictor: Any) -> int | None:
        return int(predictor.session.get_session_options().intra_op_num_threads)

    def _artifact(self, model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
        export = exported(model, cache, recipe["opset"])
        if not recipe["graph_fp16"]:
            return export
        return cache.get_or_build(
            model,
            {"step": "ort-float16", "parent": export.name, "keep_io_types": True},
            lambda out: _to_fp16(export / MODEL_FILE, out),
        )


def _to_fp16(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(converted, str(out / MODEL_FILE))
