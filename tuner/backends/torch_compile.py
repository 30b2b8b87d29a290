"""torch.compile with inductor, freezing on (``torch._inductor.config.freezing``:
weights become constants, folded and prepacked for oneDNN).

mode:
  default                      inductor's C++/OpenMP kernels.
  max-autotune-no-cudagraphs   also benchmarks GEMM templates against aten per
                               shape (longer compile; no CUDA graphs on a CPU anyway).
precision:
  fp32  as loaded.
  bf16  called under ``torch.autocast("cpu", bfloat16)``: the traced graph casts the
        weights, and freezing folds those casts into bf16 constants, which inductor
        prepacks for oneDNN's bf16 kernels (AMX where the CPU has it) where oneDNN
        has them. Pruned without native bf16 like torch.toml's (emulated bf16 is
        slower than fp32).

Compilation happens on the first call per input shape (``dynamic=False``: each
sequence length gets kernels specialised to it), timed and reported in the trial's
timings as ``compile_s``. Inductor's cache lives in ``<tuner cache>/inductor``
(``TORCHINDUCTOR_CACHE_DIR``), so a later trial of the same model reuses the
compiled C++ kernels. Its FX graph cache cannot help with freezing on a CPU: the
frozen graph holds oneDNN-packed weights, which it refuses to pickle ("mkldnn
tensors unpickleable"), so each trial re-runs the graph passes but not the C++ builds.
Inductor needs a C++ compiler (g++); the space prunes the backend without one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.backends import _config
from tuner.errors import UnsupportedConfigError

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends._torch_common import ModulePredictor
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "bf16")
MODES = ("default", "max-autotune-no-cudagraphs")
COMPILER = "g++"


def inductor_cache_dir(cache: "ArtifactCache") -> Path:
    """Beside the conversion artifacts, under the tuner's cache (never /tmp, where
    inductor would put it by default and a reboot would lose it)."""
    return cache.root.parent / "inductor"


class TorchCompileBackend:
    name = "torch_compile"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        return None  # inductor keeps its own cache (see the module doc)

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        self._validate(config)
        return None

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> "ModulePredictor":
        precision, mode, threads = self._validate(config)
        compiler = os.environ.get("CXX", COMPILER)
        if shutil.which(compiler) is None:
            raise UnsupportedConfigError(f"torch_compile: inductor needs a C++ compiler and {compiler} is not on PATH")
        # Before torch._inductor is imported: it reads the variable when it first needs the folder.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache_dir(cache))
        import torch
        import torch._inductor.config as inductor_config

        from tuner.backends._torch_common import ModulePredictor, load_output_only, set_threads

        set_threads(threads)
        inductor_config.freezing = True
        inductor_config.fx_graph_cache = True
        # Every model is wrapped in OutputOnly, so every compile is of one forward code
        # object: in a process that loads several (tests, benchmarks; a trial loads one)
        # dynamo would count each as a recompile and, past its limit, silently run the
        # model eager. Each load starts from dynamo's empty state instead.
        torch._dynamo.reset()
        module = load_output_only(model)
        compiled = torch.compile(module, backend="inductor", mode=mode, dynamic=False, fullgraph=False)
        return ModulePredictor(
            compiled, autocast_dtype=torch.bfloat16 if precision == "bf16" else None, first_call_key="compile_s"
        )

    def threads_in_use(self, predictor: Any) -> int | None:
        import torch

        return torch.get_num_threads()

    def _validate(self, config: dict[str, Any]) -> tuple[str, str, int]:
        return (
            _config.choice(config, "precision", PRECISIONS, self.name),
            _config.choice(config, "mode", MODES, self.name, default="default"),
            _config.threads(config, self.name),
        )
