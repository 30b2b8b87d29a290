"""What the torch-family backends (TorchScript, torch.compile, IPEX, CUDA) share:
a module that takes tensors and returns one tensor (what tracing and compiling
want), the example a trace is recorded with, and the predictor that times it.

Imported only inside workers: it imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from tuner.model import ModelRef

# A trace is recorded on this text padded to TRACE_SEQ_LEN tokens. It must be
# shorter than that: with padding the attention mask has zeros, so transformers
# keeps the masking path. Traced on an all-ones mask, its "no padding, drop the
# mask" shortcut would be baked into the graph and padded inputs would go wrong.
TRACE_TEXT = "A short sentence to trace with."
TRACE_SEQ_LEN = 16


class OutputOnly(torch.nn.Module):
    """The transformers model as tensors in, one tensor out (TorchScript and inductor
    both want that): the last hidden state of an encoder, the logits of a classifier
    (per token for a token classifier): the first output in each case."""

    def __init__(self, model: torch.nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        output = self.model(**kwargs, return_dict=False)
        return output[0]


def load_output_only(ref: "ModelRef", attn_implementation: str | None = None) -> OutputOnly:
    from tuner.model import load_torch_model

    return OutputOnly(load_torch_model(ref, attn_implementation), ref.task).eval()


def trace_example(ref: "ModelRef") -> dict[str, torch.Tensor]:
    """The padded example a trace records (see TRACE_TEXT)."""
    from tuner.model import input_names, load_tokenizer

    tokenizer = load_tokenizer(ref)
    # Cut short where a small vocabulary spells the text in more tokens than fit with
    # padding (a text that fits is the same example as before, and keys the same trace).
    encoded = tokenizer([TRACE_TEXT], truncation=True, max_length=TRACE_SEQ_LEN - 4)
    encoded = tokenizer.pad(encoded, padding="max_length", max_length=TRACE_SEQ_LEN, return_tensors="pt")
    example = {n: encoded[n].to(torch.int64) for n in input_names(ref)}
    assert int(example["attention_mask"].min()) == 0, "the trace example must be padded"
    return example


def to_tensors(inputs: dict[str, np.ndarray], device: str = "cpu") -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device) for name, a in inputs.items()}


def autocast(enabled_dtype: torch.dtype | None, device: str = "cpu") -> Any:
    return torch.autocast(device, dtype=enabled_dtype) if enabled_dtype is not None else nullcontext()


@dataclass
class ModulePredictor:
    """Times ``module(**inputs)`` under inference mode (and autocast when asked).

    ``timings`` collects one-off costs the worker adds to the trial's timings: a
    compiled module's compile time is paid on its first call per input shape.
    """

    module: Callable[..., torch.Tensor]
    autocast_dtype: torch.dtype | None = None
    device: str = "cpu"
    first_call_key: str | None = None  # e.g. "compile_s": time each new shape's first call
    timings: dict[str, float] = field(default_factory=dict)
    _seen: set[tuple[tuple[str, tuple[int, ...]], ...]] = field(default_factory=set)

    def bind(self, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return to_tensors(inputs, self.device)

    def run(self, bound: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.first_call_key is not None:
            shape = tuple((k, tuple(v.shape)) for k, v in bound.items())
            if shape not in self._seen:
                started = time.perf_counter()
                output = self._call(bound)
                self._seen.add(shape)
                self.timings[self.first_call_key] = self.timings.get(self.first_call_key, 0.0) + (
                    time.perf_counter() - started
                )
                return output
        return self._call(bound)

    def _call(self, bound: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.autocast_dtype, self.device):
            output = self.module(**bound)
        if self.device != "cpu":
            # CUDA calls return before the kernels finish: a timed call must include them.
            torch.cuda.synchronize()
        return output

    def to_numpy(self, output: torch.Tensor) -> np.ndarray:
        return output.detach().float().cpu().numpy()


def set_threads(threads: int) -> None:
    # Before loading: the intra-op pool is sized on first use.
    torch.set_num_threads(threads)
