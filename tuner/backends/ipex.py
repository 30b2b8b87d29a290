"""Intel Extension for PyTorch (IPEX), run in its own environment (`tuner env create ipex`).

IPEX 2.8 is the last release and needs torch 2.8 exactly, so this module runs in the
ipex environment's interpreter (search_spaces/ipex.toml declares it), never beside
the tuner's torch. The worker protocol is the same.

precision:
  fp32  ``ipex.optimize(model, dtype=torch.float32)``: prepacked weights, fused ops.
  bf16  ``ipex.optimize(model, dtype=torch.bfloat16)``, called under
        ``torch.autocast("cpu", bfloat16)`` (IPEX's documented bf16 recipe).
  int8  IPEX dynamic quantization (``default_dynamic_qconfig_mapping``: int8
        weights per channel, activations quantized per call), traced and frozen:
        IPEX's int8 kernels exist only in TorchScript graphs. No calibration data.
graph:
  eager the optimized module as it is.
  jit   traced and frozen with torch.jit (IPEX's graph fusions, e.g. linear+gelu,
        only happen in a TorchScript graph).

Nothing is cached on disk: ``ipex.optimize`` and tracing take seconds, and a frozen
IPEX graph holds prepacked weights laid out for the CPU it was built on.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tuner.backends import _config
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends._torch_common import ModulePredictor
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "bf16", "int8")
GRAPHS = ("eager", "jit")


class IpexBackend:
    name = "ipex"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        self._validate(config)
        return None

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> "ModulePredictor":
        precision, graph, threads = self._validate(config)
        try:
            import intel_extension_for_pytorch as ipex
        except ImportError as exc:
            raise UnsupportedConfigError(
                f"ipex: intel_extension_for_pytorch does not import in this interpreter ({exc}); "
                "its trials run in the ipex environment: `tuner env create ipex`"
            ) from exc
        import torch

        from tuner.backends._torch_common import ModulePredictor, load_output_only, set_threads, trace_example

        set_threads(threads)
        module = load_output_only(model)
        example = trace_example(model)
        with warnings.catch_warnings():
            # TracerWarnings about Python ints from shapes: the example is padded so
            # the masking path is the one recorded (see _torch_common.TRACE_TEXT).
            warnings.simplefilter("ignore")
            if precision == "int8":
                return ModulePredictor(_int8_dynamic(ipex, module, example))
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            optimized = ipex.optimize(module, dtype=dtype, inplace=True)
            autocast_dtype = torch.bfloat16 if precision == "bf16" else None
            if graph == "jit":
                optimized = _trace(optimized, example, autocast_dtype)
        return ModulePredictor(optimized, autocast_dtype=autocast_dtype)

    def threads_in_use(self, predictor: Any) -> int | None:
        import torch

        return torch.get_num_threads()

    def _validate(self, config: dict[str, Any]) -> tuple[str, str, int]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        # int8 is always traced (see the module doc); the space does not ask.
        graph = "jit" if precision == "int8" else _config.choice(config, "graph", GRAPHS, self.name, default="eager")
        return precision, graph, _config.threads(config, self.name)


def _trace(module: Any, example: dict[str, Any], autocast_dtype: Any) -> Any:
    import torch

    from tuner.backends._torch_common import autocast

    # IPEX's recipe: the JIT's own autocast pass off, autocast applied while tracing.
    torch._C._jit_set_autocast_mode(False)
    with torch.no_grad(), autocast(autocast_dtype):
        traced = torch.jit.trace(module, example_kwarg_inputs=example, check_trace=False, strict=False)
        frozen = torch.jit.freeze(traced.eval())
        # The profiling executor specializes on the first calls: make them here.
        for _ in range(2):
            frozen(**example)
    return frozen


def _int8_dynamic(ipex: Any, module: Any, example: dict[str, Any]) -> Any:
    import torch
    from intel_extension_for_pytorch.quantization import convert, prepare

    qconfig = ipex.quantization.default_dynamic_qconfig_mapping
    prepared = prepare(module, qconfig, example_kwarg_inputs=example, inplace=False)
    converted = convert(prepared)
    return _trace(converted, example, None) if isinstance(converted, torch.nn.Module) else converted
