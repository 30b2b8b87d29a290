"""A model of the size people serve: a BERT-base-shaped classifier (12 x 768, 110M
parameters, random weights from a config, 2 labels) tuned at seq 128 end to end,
under a trial timeout scaled to its size (docs/measurement.md)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import run_tuner

from tuner.model import parameter_count, resolve_model
from tuner.search._options import DEFAULT_TRIAL_TIMEOUT_S, trial_timeout_for


@pytest.fixture(scope="module")
def bert_base_classifier(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("bert-base-classifier")
    torch.manual_seed(0)
    config = BertConfig(num_labels=2)  # bert-base-uncased's shape, MiniLM's (uncased WordPiece) vocabulary
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, folder / name)
    return folder


def test_the_trial_timeout_scales_with_the_parameters(bert_base_classifier: Path, minilm_dir: Path) -> None:
    assert trial_timeout_for(parameter_count(resolve_model(str(minilm_dir)))) == DEFAULT_TRIAL_TIMEOUT_S
    parameters = parameter_count(resolve_model(str(bert_base_classifier)))
    assert 109_000_000 < parameters < 110_000_000
    assert 2800 < trial_timeout_for(parameters) < 3000  # 600 s per MiniLM-L6 (22.7M parameters)
    assert trial_timeout_for(1_000) == DEFAULT_TRIAL_TIMEOUT_S  # never below the default


@pytest.mark.slow
def test_a_bert_base_classifier_tunes_at_seq_128(bert_base_classifier: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "lock"),
           "HF_HUB_OFFLINE": "1"}
    # The stock default (torch fp32), ONNX Runtime fp32, then torch int8 and ONNX Runtime int8,
    # each measured in full (--no-prune: int8 without VNNI may be slower, and pruning is not
    # what this test is about).
    proc = run_tuner("auto", "--model", str(bert_base_classifier), "--seq-len", "128", "--trials", "4",
                     "--backends", "torch,onnxruntime", "--min-time", "0.2", "--quiet", "--seed", "0",
                     "--finalists", "0", "--noise-retries", "0", "--noise-wait", "0", "--no-prune", env=env, timeout=900)
    assert "winner" in proc.stdout and "speedup" in proc.stdout, proc.stdout

    with sqlite3.connect(tmp_path / "data" / "tuner.db") as db:
        trials = db.execute("SELECT status, config, accuracy, reason FROM tuner_trials").fetchall()
    assert len(trials) == 4, trials
    for status, config, accuracy, reason in trials:
        # Nothing timed out or failed: the conversions of a 110M model fit its scaled limit.
        assert status in ("ok", "rejected"), (config, reason)
        figures = json.loads(accuracy)
        assert set(figures) == {"label_agreement", "max_logit_diff", "logit_error"}
        if json.loads(config)["precision"] == "fp32":
            assert status == "ok" and figures["logit_error"] < 1e-3, (config, figures)
