"""Fixtures for the hub tests: a loopback hub (tests/hub/hub_server.py) serving tiny
models built from a config, and a process that may talk to it and to nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hub_server import LoopbackHub

REPO = "org/tiny-bert"


@pytest.fixture(scope="session")
def tiny_bert_repo(tiny_bert_dir: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``org/tiny-bert`` holds on the hub: the tiny BERT (config, safetensors,
    MiniLM's tokenizer), sentence-transformers' pooling config, and files tuner must
    not fetch: a README, a duplicate of the weights as .bin, an ONNX export."""
    folder = tmp_path_factory.mktemp("repo-tiny-bert")
    shutil.copytree(tiny_bert_dir, folder, dirs_exist_ok=True)
    shutil.copy(minilm_dir / "modules.json", folder / "modules.json")
    (folder / "1_Pooling").mkdir()
    shutil.copy(minilm_dir / "1_Pooling" / "config.json", folder / "1_Pooling" / "config.json")
    (folder / "README.md").write_text("# tiny-bert\nA 2-layer BERT for tests.\n")
    (folder / "pytorch_model.bin").write_bytes(b"not fetched: safetensors are preferred" * 100)
    (folder / "training_args.bin").write_bytes(b"not fetched")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"not fetched" * 100)
    return folder


@pytest.fixture(scope="session")
def bin_only_repo(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose only weights are a pickled pytorch_model.bin."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("repo-bin-only")
    torch.manual_seed(1)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    model = BertModel(config).eval()
    model.config.save_pretrained(folder)  # transformers 5 writes only safetensors: the .bin by hand
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, folder / name)
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    return folder


@pytest.fixture(scope="session")
def no_weights_repo(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("repo-no-weights")
    for file in tiny_bert_dir.iterdir():
        if not file.name.endswith(".safetensors"):
            shutil.copy(file, folder / file.name)
    (folder / "model.onnx").write_bytes(b"an ONNX file is not PyTorch weights")
    return folder


@pytest.fixture(scope="session")
def decoder_repo(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2's config (with weights that are never fetched): not an encoder tuner runs."""
    folder = tmp_path_factory.mktemp("repo-gpt2")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                                    "n_layer": 2, "n_embd": 32, "n_head": 2}))
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    return folder


@pytest.fixture
def hub(tiny_bert_repo: Path, bin_only_repo: Path, no_weights_repo: Path, decoder_repo: Path):
    """The loopback hub, with org/tiny-bert (tag v1), org/bin-only, org/no-weights,
    org/gpt2, org/gated (token "hf_good") and org/private (token "hf_good")."""
    server = LoopbackHub()
    server.add_repo(REPO, tiny_bert_repo, tags=("v1",))
    server.add_repo("org/bin-only", bin_only_repo)
    server.add_repo("org/no-weights", no_weights_repo)
    server.add_repo("org/gpt2", decoder_repo)
    server.add_repo("org/gated", tiny_bert_repo, gated=True, token="hf_good")
    server.add_repo("org/private", tiny_bert_repo, private=True, token="hf_good")
    with server:
        yield server


def _loopback_only(request) -> None:
    """httpx request hook: a test request that would leave this machine fails instead."""
    if request.url.host not in ("127.0.0.1", "localhost"):
        raise AssertionError(f"a test request would leave loopback: {request.method} {request.url}")


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``online(url)``: from now on this process may download from ``url``, and only
    there, into a fresh Hugging Face cache, which it returns. The suite is offline
    otherwise (tests/conftest.py); every request of huggingface_hub's client is checked
    to stay on loopback (its side requests, such as its agent registry, follow its
    import-time ENDPOINT: pointed at ``url`` too)."""
    from huggingface_hub import constants, get_session

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    session = get_session()
    session.event_hooks = {**session.event_hooks, "request": [_loopback_only, *session.event_hooks["request"]]}

    def connect(url: str) -> Path:
        monkeypatch.setenv("HF_ENDPOINT", url)
        # hf_hub_url builds on these two, read when huggingface_hub was imported.
        monkeypatch.setattr(constants, "ENDPOINT", url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
        return tmp_path / "hf-cache"

    yield connect
    session.event_hooks = {**session.event_hooks,
                           "request": [h for h in session.event_hooks["request"] if h is not _loopback_only]}
