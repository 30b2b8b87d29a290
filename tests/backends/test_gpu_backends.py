"""The GPU backends (torch_cuda, onnxruntime_cuda): pruned with the reason where NVML
sees no NVIDIA GPU, kept where the fake NVML shows one (tests/hardware's fake), and
refusing to run, with why, where torch has no CUDA device. What needs a real GPU is
skipped with the reason, never faked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tuner.backends import get_backend
from tuner.errors import UnsupportedConfigError
from tuner.hardware import detect
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, resolve_model
from tuner.space import load_space

TESTS = Path(__file__).resolve().parents[1]
CPUS = TESTS / "fixtures" / "cpus"
GPU_BACKENDS = ["torch_cuda", "onnxruntime_cuda"]


def _fake_nvml_module():
    spec = importlib.util.spec_from_file_location("_fake_nvml_tests", TESTS / "hardware" / "test_gpu.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _torch_has_cuda_device() -> bool:
    import torch

    return torch.version.cuda is not None and torch.cuda.is_available()


def test_pruned_without_a_gpu_with_the_reason() -> None:
    fake = _fake_nvml_module()
    import pynvml

    machine = detect(str(CPUS / "sapphire_rapids"), nvml=fake.FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    space = load_space(machine)
    for name in GPU_BACKENDS:
        assert name not in space.backends
        [pruned] = [p for p in space.pruned if p.dimension == "backend" and p.choice == name]
        assert pruned.reason.startswith("no NVIDIA GPU"), pruned
        # Its environment is not what stops it: the GPU is, and the reason says only that.
        assert "tuner env create" not in pruned.reason


def test_this_machine_prunes_every_cuda_choice() -> None:
    machine = detect()
    if machine.gpus:
        pytest.skip(f"this machine has an NVIDIA GPU ({machine.gpus[0].name})")
    space = load_space(machine)
    reasons = {p.choice: p.reason for p in space.pruned if p.dimension == "backend"}
    for name in GPU_BACKENDS:
        assert reasons[name].startswith("no NVIDIA GPU")


def test_kept_with_a_gpu() -> None:
    fake = _fake_nvml_module()
    machine = detect(str(CPUS / "sapphire_rapids"), nvml=fake.FakeNvml(devices=[fake.H100]))
    space = load_space(machine)
    assert "torch_cuda" in space.backends
    precisions = [d for d in space.dimensions("torch_cuda") if d.name == "precision"][0].values()
    assert set(precisions) == {"fp16", "bf16", "fp32"}
    # onnxruntime-gpu lives in its own environment: with a GPU, that is what is missing
    # (unless someone built it here).
    if "onnxruntime_cuda" not in space.backends:
        [pruned] = [p for p in space.pruned if p.choice == "onnxruntime_cuda"]
        assert "run `tuner env create onnxruntime-gpu`" in pruned.reason


def test_torch_cuda_refuses_without_a_device(tiny_bert_dir: Path, artifact_cache) -> None:
    if _torch_has_cuda_device():
        pytest.skip("torch sees a CUDA device here; test_torch_cuda_on_a_real_gpu covers it")
    ref = resolve_model(str(tiny_bert_dir))
    with pytest.raises(UnsupportedConfigError, match="torch_cuda: (torch .* is built without CUDA|no NVIDIA GPU)"):
        get_backend("torch_cuda").load(ref, {"precision": "fp16", "threads": 1}, artifact_cache)


def test_ort_cuda_refuses_without_its_provider(tiny_bert_dir: Path, artifact_cache) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    ref = resolve_model(str(tiny_bert_dir))
    with pytest.raises(UnsupportedConfigError, match="has no CUDAExecutionProvider"):
        get_backend("onnxruntime_cuda").load(ref, {"provider": "cuda", "precision": "fp16", "threads": 1},
                                             artifact_cache)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("compile_mode", ["none", "default"])
def test_torch_cuda_on_a_real_gpu(precision: str, compile_mode: str, tiny_bert_dir: Path, artifact_cache) -> None:
    if not _torch_has_cuda_device():
        pytest.skip("needs an NVIDIA GPU and a CUDA build of torch; this machine has neither")
    import numpy as np

    ref = resolve_model(str(tiny_bert_dir))
    eager = get_backend("torch").load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)
    gpu = get_backend("torch_cuda").load(ref, {"precision": precision, "compile": compile_mode, "threads": 1},
                                         artifact_cache)
    for inputs in eval_inputs(ref, DEFAULT_EVAL_TEXTS[:3], seq_len=32):
        want = eager.to_numpy(eager.run(eager.bind(inputs)))
        got = gpu.to_numpy(gpu.run(gpu.bind(inputs)))
        mask = inputs["attention_mask"][..., None]
        pw, pg = (want * mask).sum(1).ravel(), (got * mask).sum(1).ravel()
        assert pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg) > 0.99
