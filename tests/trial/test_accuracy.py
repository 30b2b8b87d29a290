import numpy as np

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
