"""The launch demo's model: a 2-label classifier of MiniLM-L6-H384's exact shape (what
`philschmid/MiniLM-L6-H384-uncased-sst2` is), built here from the shipped MiniLM
encoder and a seeded head, tuned at seq 16 and 128 under the label guard."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import run_tuner

from tuner.model import resolve_model


@pytest.fixture(scope="module")
def sst2_shaped_classifier(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("minilm-sst2-shaped")
    config = BertConfig.from_pretrained(minilm_dir)
    config.num_labels = 2
    config.id2label, config.label2id = {0: "NEGATIVE", 1: "POSITIVE"}, {"NEGATIVE": 0, "POSITIVE": 1}
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(0)  # the head: the same seeded weights in every run
    model = BertForSequenceClassification(config)
    encoder = {f"bert.{k}": v for k, v in load_file(minilm_dir / "model.safetensors").items()}
    loaded = model.load_state_dict(encoder, strict=False)
    assert sorted(loaded.missing_keys) == ["classifier.bias", "classifier.weight"]  # all else is MiniLM's
    model.eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.mark.slow
def test_the_classifier_tunes_at_16_and_128_under_the_label_guard(sst2_shaped_classifier: Path, tmp_path: Path) -> None:
    ref = resolve_model(str(sst2_shaped_classifier))
    assert ref.task == "classification"
    env = {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "lock"),
           "HF_HUB_OFFLINE": "1"}
    # ONNX Runtime only (no torch fork server to start): its fp32 default, then int8, then one more.
    proc = run_tuner("auto", "--model", str(sst2_shaped_classifier), "--seq-len", "16,128", "--trials", "3",
                     "--backends", "onnxruntime", "--min-time", "0.2", "--quiet", "--seed", "0", "--finalists", "0",
                     "--noise-retries", "0", "--noise-wait", "0", env=env, timeout=600)
    assert proc.stdout.count("winner") == 2, proc.stdout
    assert "accuracy labels 100.0%" in proc.stdout

    with sqlite3.connect(tmp_path / "data" / "tuner.db") as db:
        studies = dict(db.execute("SELECT id, seq_len FROM tuner_studies").fetchall())
        trials = db.execute("SELECT study_id, status, accuracy, reason FROM tuner_trials").fetchall()
    assert sorted(studies.values()) == [16, 128]
    for study_id in studies:
        judged = [(s, json.loads(a), r) for sid, s, a, r in trials if sid == study_id and a]
        assert any(s == "ok" for s, _, _ in judged)
        for status, accuracy, reason in judged:
            # The classifier's figures: labels and logits, never embedding cosines.
            assert set(accuracy) == {"label_agreement", "max_logit_diff", "logit_error"}
            if status == "ok":
                assert accuracy["label_agreement"] >= 0.99 and accuracy["logit_error"] <= 0.2
            if status == "rejected":
                assert "label agreement" in reason or "logit error" in reason
