"""TorchScript: the transformers model traced with ``torch.jit.trace`` and frozen
(``torch.jit.freeze``: weights become constants, so the JIT folds and fuses around them).

precision:
  fp32  traced and frozen as it is.
  bf16  traced under ``torch.autocast("cpu", bfloat16)``, so the casts are part of
        the graph. Without avx512_bf16 / AMX the bf16 matmuls are emulated and slower
        than fp32: search_spaces/torchscript.toml prunes it there, as torch.toml
        does (the backend still runs it when asked).

The frozen graph is a conversion artifact (``model.pt``, torch.jit.save), cached by
model content + recipe + library versions, so trials that differ in threads or
binding load it instead of tracing again. The trace is recorded on a padded example
(``_torch_common.TRACE_TEXT``) and takes any batch and sequence length.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.backends import _config

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends._torch_common import ModulePredictor
    from tuner.model import ModelRef

PRECISIONS = ("fp32", "bf16")
MODEL_FILE = "model.pt"


class TorchScriptBackend:
    name = "torchscript"

    def recipe(self, config: dict[str, Any]) -> dict[str, Any]:
        precision = _config.choice(config, "precision", PRECISIONS, self.name)
        # "example" names what the trace was recorded on: changing TRACE_TEXT/LEN must
        # change the key, or an old trace would be reused.
        from tuner.backends._torch_common import TRACE_SEQ_LEN, TRACE_TEXT

        return {"step": "torchscript-trace-freeze", "precision": precision, "example": f"{TRACE_TEXT}|{TRACE_SEQ_LEN}"}

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str:
        _config.threads(config, self.name)
        return self._artifact(model, self.recipe(config), cache).name

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> "ModulePredictor":
        threads = _config.threads(config, self.name)
        folder = self._artifact(model, self.recipe(config), cache)
        import torch

        from tuner.backends._torch_common import ModulePredictor, set_threads

        set_threads(threads)
        with warnings.catch_warnings():
            # "torch.jit.load is deprecated" (torch 2.13): still supported; see docs/backends/torchscript.md.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(folder / MODEL_FILE), map_location="cpu").eval()
        # The casts were traced into the graph: no autocast around the calls.
        return ModulePredictor(module)

    def threads_in_use(self, predictor: Any) -> int | None:
        import torch

        return torch.get_num_threads()

    def _artifact(self, model: "ModelRef", recipe: dict[str, Any], cache: "ArtifactCache") -> Path:
        # Keyed on this backend's libraries (search_spaces/torchscript.toml: torch, transformers).
        return cache.for_backend(self.name).get_or_build(
            model, recipe, lambda out: trace_and_freeze(model, recipe["precision"], out)
        )


def trace_and_freeze(model: "ModelRef", precision: str, out: Path) -> None:
    import torch

    from tuner.backends._torch_common import autocast, load_output_only, trace_example

    module = load_output_only(model)
    example = trace_example(model)
    dtype = torch.bfloat16 if precision == "bf16" else None
    with warnings.catch_warnings():
        # TracerWarnings ("converting a tensor to a Python integer"): shape checks
        # in transformers that hold for every padded input (see TRACE_TEXT).
        warnings.simplefilter("ignore")
        with torch.no_grad(), autocast(dtype):
            traced = torch.jit.trace(module, example_kwarg_inputs=example, check_trace=False, strict=False)
            frozen = torch.jit.freeze(traced.eval())
        torch.jit.save(frozen, str(out / MODEL_FILE))
