"""Export a transformers encoder to ONNX, the first step of every ONNX-based recipe.

Three choices, each made by measuring on torch 2.13 / transformers 5:
- The TorchScript exporter (``dynamo=False``). It still exists (deprecated); the
  dynamo exporter would need ``onnxscript``, and its graph is not what
  onnxruntime.transformers' BERT fusions look for.
- ``attn_implementation="eager"`` while exporting. transformers' default (sdpa)
  exports a masked-softmax pattern the Attention fusion does not recognise: with it
  the "fused" graph keeps 48 MatMuls and gets no Attention node.
- A wrapper module with explicit keyword inputs: transformers 5 reordered
  BertModel.forward's positional arguments, so tracing it positionally feeds
  token_type_ids into the wrong slot.

The example batch has a padded row: transformers drops the attention mask when it
sees no padding, and a trace taken then would ignore padding forever. Every export
is checked against torch on other shapes before it is cached.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

MODEL_FILE = "model.onnx"
DEFAULT_OPSET = 17  # the first with LayerNormalization, which the fusions expect
# The libraries whose versions key the export. Every ONNX-based backend starts from
# it, so it is keyed on these, not on the asking backend's: one export serves them all.
# onnxruntime checks the export against torch (verify_against_torch).
EXPORT_LIBRARIES = ("torch", "onnx", "onnxruntime", "transformers")
# fp32 ONNX vs fp32 torch differ only by kernel summation order.
_VERIFY_ATOL = 1e-3


def input_names(model: "ModelRef") -> list[str]:
    """The graph's inputs: what the model takes of what its tokenizer emits (DistilBERT
    and MPNet take no token_type_ids; tuner.model.input_names)."""
    from tuner.model import input_names as model_inputs

    return model_inputs(model)


def output_name(model: "ModelRef") -> str:
    from tuner.model import output_name as task_output

    return task_output(model.task)


def _wrapper(module: "torch.nn.Module", output: str) -> "torch.nn.Module":
    import torch

    class KeywordInputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return getattr(self.inner(**kwargs), output)

    # eval() on the wrapper too: the exporter restores the wrapper's training flag
    # afterwards, recursively, which would switch dropout on in the inner model.
    return KeywordInputs(module).eval()


def _example_inputs(model: "ModelRef", seq_len: int) -> dict[str, np.ndarray]:
    from tuner.model import DEFAULT_EVAL_TEXTS, load_tokenizer

    tokenizer = load_tokenizer(model)
    # A long and a short text padded to one length: the mask has zeros.
    texts = [max(DEFAULT_EVAL_TEXTS, key=len), min(DEFAULT_EVAL_TEXTS, key=len)]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {n: encoded[n].astype(np.int64) for n in input_names(model)}


def exported(model: "ModelRef", cache: "ArtifactCache", opset: int = DEFAULT_OPSET) -> Path:
    """The folder of ``model``'s export (``MODEL_FILE``), built once in ``cache``: the
    first step of onnxruntime, openvino, onnxruntime_cuda and onnxruntime_openvino."""
    return cache.keyed_on(EXPORT_LIBRARIES).get_or_build(
        model,
        {"step": "onnx-export", "exporter": "torchscript", "attn": "eager", "opset": opset},
        lambda out: export_onnx(model, out, opset=opset),
    )


def export_onnx(model: "ModelRef", out_dir: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``out_dir/model.onnx`` (dynamic batch and sequence axes) and verify it."""
    import torch

    from tuner.model import load_torch_model

    names = input_names(model)
    output = output_name(model)
    module = _wrapper(load_torch_model(model, attn_implementation="eager"), output)
    example = _example_inputs(model, seq_len=24)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    # A sequence classifier's logits are (batch, labels); token states and a token
    # classifier's logits have the sequence axis too.
    axes[output] = {0: "batch"} if model.task == "classification" else {0: "batch", 1: "sequence"}
    path = out_dir / MODEL_FILE
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation and tracer warnings: known, see above.
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                tuple(torch.from_numpy(example[n]) for n in names),
                str(path),
                dynamo=False,
                input_names=names,
                output_names=[output],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    verify_against_torch(model, path, module)
    return path


def verify_against_torch(model: "ModelRef", path: Path, module: "torch.nn.Module") -> None:
    """Raise if the ONNX graph disagrees with torch on shapes other than the traced one."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seq_len in (7, 40):
        example = _example_inputs(model, seq_len)
        # A batch of one unpadded row too: the case a careless trace gets wrong.
        for feeds in (example, {n: a[:1] for n, a in example.items()}):
            got = session.run(None, feeds)[0]
            with torch.no_grad():
                want = module(**{n: torch.from_numpy(a) for n, a in feeds.items()}).numpy()
            diff = float(np.abs(got - want).max())
            if got.shape != want.shape or diff > _VERIFY_ATOL:
                raise RuntimeError(
                    f"ONNX export of {model.model_id} disagrees with torch at shape {feeds['input_ids'].shape}: "
                    f"max abs diff {diff:.2e}"
                )
