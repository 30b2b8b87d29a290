import numpy as np
import pytest

from tuner.trial.accuracy import Guard, compare, summarize_output


def test_mean_pooling_ignores_padding():
    hidden = np.array([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert np.allclose(summarize_output("embedding", hidden, mask), [[2.0, 2.0]])


def test_embedding_guard():
    ref = np.random.default_rng(0).normal(size=(8, 16))
    same = compare("embedding", ref, ref)
    assert same["cosine_min"] > 0.9999
    assert Guard().check("embedding", same) is None
    noisy = compare("embedding", ref, ref + np.random.default_rng(1).normal(scale=0.5, size=ref.shape))
    reason = Guard().check("embedding", noisy)
    assert reason and "cosine" in reason
    assert Guard().violation("embedding", noisy) > 0
    assert Guard().violation("embedding", same) == 0


def test_classification_guard():
    ref = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.3]])
    flipped = ref.copy()
    flipped[0] = [0.0, 1.0]
    figures = compare("classification", ref, flipped)
    assert figures["label_agreement"] == 0.75
    assert figures["max_logit_diff"] == 2.0
    assert "label agreement" in Guard().check("classification", figures)
    assert Guard().check("classification", compare("classification", ref, ref)) is None


def test_poolings_as_sentence_transformers_computes_them():
    states = np.array([[[1.0, 0.0], [3.0, 4.0], [5.0, -2.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 1, 0]])
    assert np.allclose(summarize_output("embedding", states, mask, "cls"), [[1.0, 0.0]])
    assert np.allclose(summarize_output("embedding", states, mask, "max"), [[5.0, 4.0]])
    assert np.allclose(summarize_output("embedding", states, mask, "mean"), [[3.0, 2 / 3]])
    assert np.allclose(summarize_output("embedding", states, mask, "mean_sqrt_len"), [[9 / np.sqrt(3), 2 / np.sqrt(3)]])
    assert np.allclose(summarize_output("embedding", states, mask, "weightedmean"), [[(1 + 6 + 15) / 6, (8 - 6) / 6]])
    assert np.allclose(summarize_output("embedding", states, mask, "lasttoken"), [[5.0, -2.0]])
    assert np.allclose(summarize_output("embedding", states, mask, "cls+mean"), [[1.0, 0.0, 3.0, 2 / 3]])


def test_token_classification_is_judged_per_real_token():
    logits = np.array([[[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]],
                       [[0.0, 3.0], [5.0, 5.0], [7.0, 7.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    rows = summarize_output("token_classification", logits, mask)
    assert rows.tolist() == [[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]  # padding dropped, one row per token
    flipped = rows.copy()
    flipped[1] = [1.0, 0.0]
    figures = compare("token_classification", rows, flipped)
    assert figures["label_agreement"] == 2 / 3
    reason = Guard().check("token_classification", figures)
    assert reason and "label agreement" in reason
    assert Guard().violation("token_classification", figures) > 0
    assert Guard().check("token_classification", compare("token_classification", rows, rows)) is None


def test_outputs_of_another_shape_are_an_error_not_a_figure():
    with pytest.raises(ValueError, match="shape"):
        compare("embedding", np.ones((4, 8)), np.ones((4, 16)))
