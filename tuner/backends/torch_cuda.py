"""PyTorch on an NVIDIA GPU: the transformers model in fp16 or bf16 (or fp32), eager or
compiled with inductor (Triton kernels; ``reduce-overhead`` adds CUDA graphs, which
remove the per-kernel launch cost that dominates batch-1 latency).

precision:
  fp32  as loaded (TF32 matmuls off, so it is the reference math).
  fp16  weights and activations in float16 (``model.to(torch.float16)``).
  bf16  the same in bfloat16; needs compute capability 8.0 (Ampere) or newer.
compile:
  none             eager.
  default          torch.compile(mode="default").
  reduce-overhead  torch.compile(mode="reduce-overhead"): CUDA graphs.

Runs where torch was built with CUDA and sees a device; anywhere else ``load``
raises UnsupportedConfigError with why (the space prunes it first without a GPU).
Inputs are copied to the device once in ``bind``; each timed call ends with
``torch.cuda.synchronize()`` so it includes the kernels, not only their launch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuner.backends import _config
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends._torch_common import ModulePredictor
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("none", "default", "reduce-overhead")


def cuda_unavailable_reason() -> str | None:
    """Why this torch cannot run on an NVIDIA GPU here (None: it can). Imports torch."""
    import torch

    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is built without CUDA; install a CUDA build of torch "
            "(PyPI's Linux wheel) to run torch_cuda"
        )
    if not torch.cuda.is_available():
        return f"no NVIDIA GPU visible to torch {torch.__version__} (CUDA {torch.version.cuda})"
    return None


class TorchCudaBackend:
    name = "torch_cuda"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        self._validate(config)
        return None

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> "ModulePredictor":
        precision, compile_mode, threads = self._validate(config)
        why = cuda_unavailable_reason()
        if why:
            raise UnsupportedConfigError(f"torch_cuda: {why}")
        import torch

        from tuner.backends._torch_common import ModulePredictor, load_output_only, set_threads

        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name()
            raise UnsupportedConfigError(f"torch_cuda: {name} has no bf16 (compute capability 8.0 or newer needed)")
        set_threads(threads)  # the host side: tokenizer-free, but still the launcher's threads
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (TF32 is a precision choice)
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        module: Callable[..., torch.Tensor] = load_output_only(model).to(device="cuda", dtype=dtype)
        if compile_mode != "none":
            module = torch.compile(module, mode=compile_mode, dynamic=False)
        return ModulePredictor(module, device="cuda", first_call_key="compile_s" if compile_mode != "none" else None)

    def threads_in_use(self, predictor: Any) -> int | None:
        import torch

        return torch.get_num_threads()

    def _validate(self, config: dict[str, Any]) -> tuple[str, str, int]:
        return (
            _config.choice(config, "precision", PRECISIONS, self.name),
            _config.choice(config, "compile", COMPILE_MODES, self.name, default="none"),
            _config.threads(config, self.name),
        )
