"""Every encoder family people serve, through every CPU backend.

Tiny random models of each family are built here from a transformers config (2
layers, hidden 32; no download), with a tokenizer of the family's own class: the
shipped MiniLM's WordPiece vocabulary for BERT, DistilBERT, ELECTRA and MPNet, a
byte-level BPE (RoBERTa) or a Unigram model (XLM-RoBERTa, ALBERT) trained here on the
tuner's own sentences. Each family then runs one trial per backend through the
worker's own trial function (``tuner.trial.worker.run_spec``: prepare, load, the
accuracy guard against the fp32 reference, the timed calls) with a handful of calls,
and one family that is not BERT is tuned end to end by ``tuner auto``.

What a backend cannot do with a family is an ``unsupported`` trial with its reason,
never an error: ONNX Runtime's BERT fusions do not match ALBERT's or MPNet's attention.

int8 trials of the random-head classifiers are not expected to pass the guard: a
seeded head's logits are tiny and their margins tinier (docs/models.md).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_tuner

from tuner import paths
from tuner.errors import UnsupportedConfigError
from tuner.model import (
    BENCH_TEXT,
    DEFAULT_EVAL_TEXTS,
    ModelRef,
    eval_inputs,
    load_torch_model,
    make_inputs,
    resolve_model,
)
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.trial.worker import run_spec

# family -> (transformers model class, task)
FAMILIES: dict[str, tuple[str, str]] = {
    "bert": ("BertModel", "embedding"),
    "bert-classifier": ("BertForSequenceClassification", "classification"),
    "bert-token-classifier": ("BertForTokenClassification", "token_classification"),
    "distilbert": ("DistilBertModel", "embedding"),
    "roberta": ("RobertaModel", "embedding"),
    "xlm-roberta": ("XLMRobertaModel", "embedding"),
    "mpnet": ("MPNetModel", "embedding"),
    "albert": ("AlbertModel", "embedding"),
    "electra": ("ElectraModel", "embedding"),
}
# The families onnx_graph fuses; for the others graph=fused is unsupported with this reason.
NOT_FUSED = {"albert": "share one set of weights", "mpnet": "relative position bias"}

# One trial per backend; ONNX Runtime fused where its fusions apply to the family.
BACKENDS: dict[str, dict[str, Any]] = {
    "torch": {"backend": "torch", "precision": "fp32"},
    "torchscript": {"backend": "torchscript", "precision": "fp32"},
    "torch_compile": {"backend": "torch_compile", "precision": "fp32"},
    "onnxruntime-fp32": {"backend": "onnxruntime", "precision": "fp32"},
    "onnxruntime-int8": {"backend": "onnxruntime", "precision": "int8", "quantization": "dynamic",
                         "quant_granularity": "per_channel", "reduce_range": False},
    # No pinning: these trials run inside pytest's own process.
    "openvino-f32": {"backend": "openvino", "precision": "fp32", "cpu_pinning": False},
    "openvino-int8": {"backend": "openvino", "precision": "int8", "quant_preset": "mixed", "cpu_pinning": False},
}
INT8 = ("onnxruntime-int8", "openvino-int8")

SEQ_LEN = 32  # longer than every eval sentence in some tokenizers, shorter in others: padding and truncation
# A handful of timed calls: these tests are about what runs, not how fast.
FEW_CALLS = S.MeasureSettings(warmup_calls=1, warmup_seconds=0.0, min_calls=3, min_seconds=0.0, max_calls=3,
                              max_seconds=1.0, settle_window=1, max_warmup_seconds=0.5, short_calls=1,
                              short_seconds=0.0)

# The tokenizers' training text: what the tuner feeds them, so real sentences do not
# dissolve into unknown tokens.
_TRAINING_TEXT = [*DEFAULT_EVAL_TEXTS, BENCH_TEXT]
_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


# --- building the tiny models ------------------------------------------------------------


def _wordpiece_vocab(minilm_dir: Path, first: tuple[str, ...] = ()) -> dict[str, int]:
    words = (minilm_dir / "vocab.txt").read_text().splitlines()
    return {word: i for i, word in enumerate([*first, *(w for w in words if w not in first)])}


def _byte_level_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(_TRAINING_TEXT, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _unigram(specials: list[str], unknown: str) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(_TRAINING_TEXT, trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token=unknown, show_progress=False))
    return [(piece, score) for piece, score in json.loads(tokenizer.to_str())["model"]["vocab"]]


def _tokenizer(family: str, minilm_dir: Path) -> Any:
    import transformers as T

    if family.startswith("bert"):
        return T.BertTokenizer(vocab=_wordpiece_vocab(minilm_dir))
    if family == "electra":
        return T.ElectraTokenizer(vocab=_wordpiece_vocab(minilm_dir))
    if family == "distilbert":
        return T.DistilBertTokenizer(vocab=_wordpiece_vocab(minilm_dir))
    if family == "mpnet":  # MPNet's own specials in front: its padding index is 1
        return T.MPNetTokenizer(vocab=_wordpiece_vocab(minilm_dir, ("<s>", "<pad>", "</s>", "[UNK]", "<mask>")))
    if family == "roberta":
        vocab, merges = _byte_level_bpe()
        return T.RobertaTokenizer(vocab=vocab, merges=merges)
    if family == "xlm-roberta":
        return T.XLMRobertaTokenizer(vocab=_unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>"))
    if family == "albert":
        return T.AlbertTokenizer(vocab=_unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>"))
    raise KeyError(family)


def _model(family: str, tokenizer: Any) -> Any:
    import transformers as T

    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family == "distilbert":
        config = T.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512,
                                    **common)
    elif family in ("roberta", "xlm-roberta", "mpnet"):
        # 514 positions as the real ones have, of which 512 are usable (tuner.model._max_positions).
        config_class = {"roberta": T.RobertaConfig, "xlm-roberta": T.XLMRobertaConfig, "mpnet": T.MPNetConfig}[family]
        config = config_class(max_position_embeddings=514, **_TINY, **common)
        if family != "mpnet":
            config.type_vocab_size = 1
    elif family in ("albert", "electra"):  # embeddings narrower than the hidden states, projected up
        config_class = T.AlbertConfig if family == "albert" else T.ElectraConfig
        config = config_class(embedding_size=16, max_position_embeddings=512, **_TINY, **common)
    else:
        config = T.BertConfig(max_position_embeddings=512, **_TINY, **common)
        config.num_labels = {"bert-classifier": 3, "bert-token-classifier": 5}.get(family, 2)
    return getattr(T, FAMILIES[family][0])(config)


def build_family(family: str, folder: Path, minilm_dir: Path) -> Path:
    """A tiny random ``family`` model with its tokenizer, saved as save_pretrained does."""
    import torch

    torch.manual_seed(0)  # the same weights in every run
    tokenizer = _tokenizer(family, minilm_dir)
    _model(family, tokenizer).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def add_pooling(folder: Path, mode: str) -> None:
    """sentence-transformers' description of the pooling: modules.json and 1_Pooling/config.json."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{key}": key == mode
             for key in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens",
                         "lasttoken")}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))


# --- one trial of a family, in this process ---------------------------------------------


class Family:
    """A built family: its ModelRef and its fp32 reference at SEQ_LEN."""

    def __init__(self, ref: ModelRef, cache_dir: Path) -> None:
        self.ref = ref
        self.cache_dir = cache_dir
        self.reference = str(cache_dir / f"reference-{ref.content_hash[:16]}.npz")
        self.run({"backend": "torch", "precision": "fp32"}, mode="reference")

    def run(self, config: dict[str, Any], mode: str = "trial") -> S.TrialResult:
        spec = S.TrialSpec(model=self.ref, workload=S.Workload(seq_len=SEQ_LEN), config={**config, "threads": 1},
                           cache_dir=str(self.cache_dir), eval_texts=list(DEFAULT_EVAL_TEXTS),
                           reference_path=self.reference, mode=mode, measure=FEW_CALLS)
        return run_spec(spec)


@pytest.fixture(scope="module", autouse=True)
def _inductor_compiles_in_this_process() -> Any:
    """torch.compile's C++ kernels built in this process: a pool of compile workers
    (each importing torch) costs more than the few small kernels these models need."""
    import torch._inductor.config as inductor_config

    before = inductor_config.compile_threads
    inductor_config.compile_threads = 1
    yield
    inductor_config.compile_threads = before


@pytest.fixture(scope="module")
def families(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Family]:
    """Each family built once for the module, when a test first asks for it."""
    built: dict[str, Family] = {}
    cache = tmp_path_factory.mktemp("family-cache")  # artifacts of these models only

    def get(family: str) -> Family:
        if family not in built:
            folder = build_family(family, tmp_path_factory.mktemp(family), minilm_dir)
            built[family] = Family(resolve_model(str(folder)), cache)
        return built[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_the_family_resolves_with_its_task_inputs_and_positions(family: str, families: Callable[[str], Family]) -> None:
    ref = families(family).ref
    assert ref.task == FAMILIES[family][1]
    inputs = make_inputs(ref, 512)
    assert inputs["input_ids"].shape == (1, 512)
    # BERT's and ELECTRA's tokenizers emit token_type_ids; the others' do not (and
    # DistilBERT and MPNet would not take them).
    with_types = family.startswith("bert") or family == "electra"
    assert sorted(inputs) == sorted(["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else []))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_runs_on_every_backend(family: str, backend: str, families: Callable[[str], Family]) -> None:
    model = families(family)
    config = dict(BACKENDS[backend])
    if config["backend"] == "onnxruntime":
        config["graph"] = "unfused" if family in NOT_FUSED else "fused"
    try:
        result = model.run(config)
    except UnsupportedConfigError as exc:  # the worker records this as an unsupported trial
        pytest.fail(f"{family} on {backend}: unsupported: {exc}")
    assert result.status == S.OK, result.reason
    assert result.stats["median"] > 0
    if config["backend"] not in ("torch", "torch_compile"):  # the others convert the model first
        assert result.artifact

    task = model.ref.task
    figures = result.accuracy
    if task == "embedding":
        assert set(figures) == {"cosine_mean", "cosine_min"}
    else:  # the classifiers' figures: labels (per token for a token classifier) and logits, never cosines
        assert set(figures) == {"label_agreement", "max_logit_diff", "logit_error"}
    assert all(math.isfinite(v) for v in figures.values()), figures
    if backend in INT8:
        if task == "embedding":
            assert figures["cosine_min"] > 0.95, figures  # int8, not garbage
        return  # a random head's margins are tiny: int8 may flip labels (module doc)
    # fp32 everywhere else: the same outputs as PyTorch up to summation order.
    assert Guard().check(task, figures) is None, figures
    if task == "embedding":
        assert figures["cosine_min"] > 0.9999, figures
    else:
        assert figures["label_agreement"] == 1.0 and figures["logit_error"] < 1e-3, figures


@pytest.mark.parametrize("family", sorted(NOT_FUSED))
def test_fused_graph_is_unsupported_where_the_fusions_do_not_apply(
    family: str, families: Callable[[str], Family]
) -> None:
    model = families(family)
    for precision in ("fp32", "int8"):
        with pytest.raises(UnsupportedConfigError, match=NOT_FUSED[family]):
            model.run({**BACKENDS[f"onnxruntime-{precision}"], "graph": "fused"})


def test_token_classifier_is_judged_per_token(families: Callable[[str], Family]) -> None:
    model = families("bert-token-classifier")
    reference = np.load(model.reference)["outputs"]
    tokens = sum(int(inputs["attention_mask"].sum()) for inputs in eval_inputs(model.ref, DEFAULT_EVAL_TEXTS, SEQ_LEN))
    assert reference.shape == (tokens, 5)  # one row per real token, one column per label


# --- end to end ----------------------------------------------------------------------------


def test_tuner_auto_on_a_roberta_encoder_with_cls_pooling(minilm_dir: Path, tmp_path: Path) -> None:
    """A RoBERTa sentence encoder whose sentence-transformers config pools the CLS
    token, tuned by `tuner auto` in worker processes: the guard compares CLS vectors."""
    folder = build_family("roberta", tmp_path / "roberta", minilm_dir)
    add_pooling(folder, "cls_token")
    ref = resolve_model(str(folder))
    assert (ref.task, ref.pooling) == ("embedding", "cls")
    env = {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_LOCK_FILE": str(tmp_path / "lock"),
           "HF_HUB_OFFLINE": "1"}
    # The warm start: ORT fp32, OpenVINO f32, ORT int8 (no torch fork server to start:
    # the in-process trials above cover the torch family).
    proc = run_tuner("auto", "--model", str(folder), "--seq-len", "16", "--trials", "3",
                     "--backends", "onnxruntime,openvino", "--min-time", "0.1", "--quiet", "--seed", "0",
                     "--finalists", "0", "--noise-retries", "0", "--noise-wait", "0", env=env, timeout=600)
    assert "winner" in proc.stdout, proc.stdout

    with sqlite3.connect(tmp_path / "data" / "tuner.db") as db:
        trials = db.execute("SELECT status, config, accuracy, reason FROM tuner_trials").fetchall()
    backends = {json.loads(config)["backend"] for _, config, _, _ in trials}
    assert backends == {"onnxruntime", "openvino"}, trials
    for status, config, accuracy, reason in trials:
        assert status in ("ok", "rejected", "pruned"), (config, reason)
        if status == "ok":
            figures = json.loads(accuracy)
            assert figures["cosine_min"] >= 0.98, (config, figures)

    # What the trials were compared with: the fp32 CLS vectors, not mean-pooled ones.
    import torch

    stored = list((paths.cache_dir() / "references").glob(f"{ref.content_hash[:24]}-seq16-*.npz"))
    assert len(stored) == 1, stored
    model = load_torch_model(ref)
    with torch.inference_mode():
        states = [model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
                  for inputs in eval_inputs(ref, DEFAULT_EVAL_TEXTS, 16)]
    cls = np.concatenate([s[:, 0] for s in states])
    assert np.allclose(np.load(stored[0])["outputs"], cls, atol=1e-4)
