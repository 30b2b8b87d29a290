"""PyTorch eager: the transformers model as it is, the stock default a tuned result beats.

precision:
  fp32  the model as loaded.
  bf16  ``torch.autocast("cpu", dtype=torch.bfloat16)`` around each call. It runs on
        any x86 CPU, but without avx512_bf16/AMX the bf16 matmuls are emulated and
        slower than fp32 (the space prunes it there; the backend still runs it).
  int8  ``torch.ao.quantization.quantize_dynamic`` of every nn.Linear to qint8
        (weights int8 per tensor, activations quantized per call). torch 2.13 still
        ships it, deprecated in favour of torchao; its warnings are silenced here.

No conversion artifact: quantization takes well under a second, so it is redone
at load time instead of being cached.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.backends import _config
from tuner.errors import UnsupportedConfigError
from tuner.model import output_name

if TYPE_CHECKING:
    import torch

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class TorchPredictor:
    model: "torch.nn.Module"
    autocast_bf16: bool
    task: str
    timings: dict[str, float] = field(default_factory=dict)

    def bind(self, inputs: dict[str, np.ndarray]) -> dict[str, "torch.Tensor"]:
        import torch

        return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in inputs.items()}

    def run(self, bound: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            if self.autocast_bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    output = self.model(**bound)
            else:
                output = self.model(**bound)
        return getattr(output, output_name(self.task))

    def to_numpy(self, output: "torch.Tensor") -> np.ndarray:
        return output.detach().float().numpy()


class TorchEagerBackend:
    name = "torch"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        self._validate(config)
        return None

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> TorchPredictor:
        precision, threads = self._validate(config)
        import torch

        from tuner.model import load_torch_model

        # Before loading: the thread pool is sized on first use.
        torch.set_num_threads(threads)
        module: torch.nn.Module = load_torch_model(model)
        if precision == "int8":
            module = _quantize_dynamic_int8(module)
        return TorchPredictor(model=module, autocast_bf16=precision == "bf16", task=model.task)

    def threads_in_use(self, predictor: Any) -> int | None:
        import torch

        return torch.get_num_threads()

    def _validate(self, config: dict[str, Any]) -> tuple[str, int]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        return precision, _config.threads(config, self.name)


def _quantize_dynamic_int8(module: "torch.nn.Module") -> "torch.nn.Module":
    import torch

    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
    if engine is None:
        raise UnsupportedConfigError(f"torch int8: no quantized engine in this build (engines: {engines})")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        raise UnsupportedConfigError(f"torch int8: torch {torch.__version__} has no quantize_dynamic ({exc})") from exc
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        # "torch.ao.quantization is deprecated": known, and documented in docs/backends/torch.md.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*", category=UserWarning)
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
