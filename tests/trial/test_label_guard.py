"""The classifier guard bounds the logits, not only the labels: a head that gives every
sentence the same label (random weights, or one class of sentences) would otherwise
pass whatever the encoder beneath it computes."""

import numpy as np

from tuner.trial.accuracy import Guard, compare


def _head_with_one_label(rng: np.random.Generator, rows: int = 16) -> np.ndarray:
    """Logits like a seeded random head on MiniLM (measured: about [-0.02, 0.07] each
    row, label 1 everywhere)."""
    return np.stack([rng.normal(-0.02, 0.02, rows), rng.normal(0.07, 0.02, rows)], axis=1)


def test_same_labels_with_far_logits_are_rejected() -> None:
    rng = np.random.default_rng(0)
    reference = _head_with_one_label(rng)
    broken = reference + np.array([-0.02, 0.05])  # every label kept, the logits moved by most of their size
    figures = compare("classification", reference, broken)
    assert figures["label_agreement"] == 1.0
    assert figures["logit_error"] > 0.4
    reason = Guard().check("classification", figures)
    assert reason and "logit error" in reason
    assert Guard().violation("classification", figures) > 0


def test_close_logits_pass_and_the_bound_is_relative() -> None:
    rng = np.random.default_rng(1)
    reference = _head_with_one_label(rng)
    close = reference * (1 + rng.normal(0, 0.03, reference.shape))
    figures = compare("classification", reference, close)
    assert figures["logit_error"] < 0.2 and Guard().check("classification", figures) is None
    assert Guard().violation("classification", figures) == 0
    # The same relative error on a confident head (logits of +-4) passes alike.
    confident = compare("classification", reference * 60, close * 60)
    assert abs(confident["logit_error"] - figures["logit_error"]) < 1e-9
    assert Guard(max_logit_error=figures["logit_error"] / 2).check("classification", figures)


def test_figures_stored_before_the_bound_are_judged_on_labels() -> None:
    assert Guard().check("classification", {"label_agreement": 1.0, "max_logit_diff": 0.5}) is None
    assert Guard().violation("classification", {"label_agreement": 1.0, "max_logit_diff": 0.5}) == 0
