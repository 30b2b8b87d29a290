"""The accuracy guard: every trial is compared with fp32 eager PyTorch on real text.

Each head is compared on what its user consumes:

- encoders (``embedding``): the cosine similarity of their pooled embeddings, pooled
  as the model's sentence-transformers config says (``ModelRef.pooling``: mean, the
  CLS token, ...; mean where it says nothing);
- sequence classifiers (``classification``): label agreement and the largest logit
  difference;
- token classifiers (``token_classification``): the same two figures over every
  real (unpadded) token of every sentence, each token a row.

Below the guard a trial is recorded but cannot win.

Label agreement alone proves little: a head whose logits barely depend on the input
(a random-weight one, or any head on a handful of sentences of one class) gives
every sentence the same label, whatever the encoder beneath computes. So the
logits themselves must stay close too: the largest difference, as a fraction of
the largest reference logit (``logit_error``), is bounded like the embeddings'
cosine (0.2 is about the error that puts a cosine at 0.98).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tasks whose rows are logits: judged on labels and logit differences, not cosines.
LOGIT_TASKS = ("classification", "token_classification")


@dataclass(frozen=True)
class Guard:
    min_cosine_mean: float = 0.99
    min_cosine_min: float = 0.98
    min_label_agreement: float = 0.99
    max_logit_error: float = 0.2  # classifiers: largest |logit - reference| / largest |reference logit|

    def check(self, task: str, accuracy: dict[str, float]) -> str | None:
        """None when the trial passes; else the reason in words."""
        if not accuracy:
            return "no accuracy figures"
        if task in LOGIT_TASKS:
            agreement = accuracy["label_agreement"]
            if agreement < self.min_label_agreement:
                return f"label agreement {agreement:.3f} < {self.min_label_agreement}"
            error = accuracy.get("logit_error")  # absent from trials stored before it was measured
            if error is not None and error > self.max_logit_error:
                return f"logit error {error:.3f} > {self.max_logit_error} (largest logit difference / largest logit)"
            return None
        mean, low = accuracy["cosine_mean"], accuracy["cosine_min"]
        if mean < self.min_cosine_mean:
            return f"mean cosine {mean:.4f} < {self.min_cosine_mean}"
        if low < self.min_cosine_min:
            return f"min cosine {low:.4f} < {self.min_cosine_min}"
        return None

    def violation(self, task: str, accuracy: dict[str, float]) -> float:
        """How far below the guard a trial is (0 when it passes): Optuna's constraint value."""
        if not accuracy:
            return 1.0
        if task in LOGIT_TASKS:
            return max(
                0.0,
                self.min_label_agreement - accuracy["label_agreement"],
                accuracy.get("logit_error", 0.0) - self.max_logit_error,
            )
        return max(
            0.0,
            self.min_cosine_mean - accuracy["cosine_mean"],
            self.min_cosine_min - accuracy["cosine_min"],
        )


def summarize_output(task: str, output: np.ndarray, attention_mask: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """What the guard compares, as rows: a sequence classifier's logits (one row per
    sentence), a token classifier's logits (one row per unpadded token, sentences one
    after another), an encoder's embedding pooled by ``pooling`` (one row per sentence;
    modes joined by "+" are concatenated, as sentence-transformers does)."""
    output = np.asarray(output, dtype=np.float32)
    if task == "classification":
        return output.reshape(output.shape[0], -1)
    if task == "token_classification":
        return output[attention_mask.astype(bool)]
    return np.concatenate([pool(mode, output, attention_mask) for mode in pooling.split("+")], axis=1)


def pool(mode: str, states: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(batch, seq, hidden) token states -> (batch, hidden) by one of sentence-transformers'
    pooling modes (tuner.model.POOLING_MODES' short names), padding excluded."""
    mask = attention_mask.astype(np.float32)[..., None]
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    if mode == "cls":
        return states[:, 0]
    if mode == "mean":
        return (states * mask).sum(axis=1) / counts
    if mode == "mean_sqrt_len":
        return (states * mask).sum(axis=1) / np.sqrt(counts)
    if mode == "max":
        return np.where(mask > 0, states, np.float32(-1e9)).max(axis=1)
    if mode == "weightedmean":  # later tokens weigh more: position 1, 2, ...
        weights = mask * np.arange(1, states.shape[1] + 1, dtype=np.float32)[None, :, None]
        return (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if mode == "lasttoken":  # the last unpadded token of each row
        last = attention_mask.shape[1] - 1 - np.argmax(attention_mask[:, ::-1] > 0, axis=1)
        return states[np.arange(states.shape[0]), last]
    raise ValueError(f"unknown pooling mode {mode!r}")


def compare(task: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Accuracy figures of candidate rows against reference rows (same order)."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    if reference.shape != candidate.shape:
        # A backend that returned another output, or another length: no figure would mean anything.
        raise ValueError(f"the outputs compared have shape {candidate.shape}, the reference {reference.shape}")
    if task in LOGIT_TASKS:
        agree = (reference.argmax(axis=1) == candidate.argmax(axis=1)).mean()
        largest_diff = float(np.abs(reference - candidate).max())
        return {
            "label_agreement": float(agree),
            "max_logit_diff": largest_diff,
            "logit_error": largest_diff / max(float(np.abs(reference).max()), 1e-12),
        }
    dot = (reference * candidate).sum(axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = dot / np.clip(norms, 1e-12, None)
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}
