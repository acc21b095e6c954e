"""The numpy scorer equals Keras's forward pass for every supported configuration."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from fraudstream.config.model import ModelParams
from fraudstream.models.builder import build_model
from fraudstream.models.exceptions import ModelUnsupported
from fraudstream.models.scorer import Scorer

INITIALIZERS = ["glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                "random_uniform"]


def perturbed(model, seed):
    """Non-trivial weights everywhere (biases and PReLU slopes start at zero otherwise)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.parametrize(("activation", "initializer"), list(itertools.product(["relu", "prelu"], INITIALIZERS)))
def test_scorer_equals_keras(activation, initializer):
    params = ModelParams(activation=activation, initializer=initializer, n_layers=3, dropout=0.3)
    model = build_model(params, n_inputs=15, seed=1)
    rng = np.random.default_rng(0)
    X = rng.normal(0, 2, (257, 15)).astype(np.float32)
    for step in range(2):
        if step:
            perturbed(model, seed=5)
        scorer = Scorer(model)
        ours = scorer.score_many(X)
        theirs = np.asarray(model(X, training=False)).ravel()
        assert ours.shape == (257,) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
        if step:
            assert np.std(theirs) > 1e-3  # not a degenerate comparison


def test_batch_sizes_and_extreme_logits():
    model = perturbed(build_model(ModelParams(n_layers=1), n_inputs=4, seed=0), 1)
    scorer = Scorer(model)
    for n in (1, 2, 64):
        X = np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32)
        np.testing.assert_allclose(scorer.score_many(X), np.asarray(model(X)).ravel(), atol=1e-5)
    big = np.full((2, 4), 1e4, dtype=np.float32)
    big[1] *= -1
    out = scorer.score_many(big)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    with pytest.raises(ValueError):
        scorer.score_many(np.zeros((3, 5), dtype=np.float32))


def test_refresh_follows_training_and_input_is_untouched():
    params = ModelParams(n_layers=2, dropout=0.0, learning_rate=0.05)
    model = build_model(params, n_inputs=6, seed=0)
    scorer = Scorer(model)
    X = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    X_copy = X.copy()
    y = (X[:, 0] > 0).astype(np.float32)
    before = scorer.score_many(X)
    model.train_on_batch(X, y)
    assert np.array_equal(scorer.score_many(X), before)  # stale until refreshed
    scorer.refresh()
    after = scorer.score_many(X)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, np.asarray(model(X)).ravel(), atol=1e-5)
    np.testing.assert_array_equal(X, X_copy)


def test_unsupported_layers_are_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ModelUnsupported):
        Scorer(model)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ModelUnsupported):
        Scorer(model)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ModelUnsupported):
        Scorer(model)
