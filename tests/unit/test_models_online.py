"""The online learner: steps, optimiser state kept across calls and restarts, rollback."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.config.model import ModelParams
from fraudstream.models.builder import build_model
from fraudstream.models.exceptions import LearnerStateInvalid
from fraudstream.models.learner import OnlineLearner

PARAMS = ModelParams(n_layers=2, dropout=0.0, learning_rate=0.01)


def batches(n_batches, seed=0, d=6, size=64):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        X = rng.normal(size=(size, d)).astype(np.float32)
        y = (X[:, 0] + 0.5 * X[:, 1] > 1.0).astype(np.float32)
        out.append((X, y))
    return out


def new_learner(seed=0, params=PARAMS):
    return OnlineLearner(build_model(params, n_inputs=6, seed=seed), params)


def assert_same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_learning_reduces_loss_and_counts_steps():
    learner = new_learner()
    data = batches(60)
    first = np.mean([learner.learn_many(X, y) for X, y in data[:5]])
    for X, y in data[5:]:
        learner.learn_many(X, y)
    last = np.mean([learner.learn_many(X, y) for X, y in data[-5:]])
    assert last < first
    assert learner.steps == 65
    X, _ = data[0]
    np.testing.assert_allclose(learner.score_many(X), np.asarray(learner.model(X)).ravel(), atol=1e-5)


def test_state_dict_restores_optimizer_moments_exactly():
    data = batches(10)
    a = new_learner(seed=0)
    for X, y in data[:5]:
        a.learn_many(X, y)
    state = a.state_dict()
    for X, y in data[5:]:
        a.learn_many(X, y)

    b = new_learner(seed=99)  # other initial weights, fresh optimiser
    b.load_state_dict(state)
    assert b.steps == 5
    for X, y in data[5:]:
        b.learn_many(X, y)
    assert_same_weights(a.get_weights(), b.get_weights())

    # Same weights but a fresh optimiser diverges: the moments really matter.
    c = new_learner(seed=99)
    c.set_weights(state["weights"])
    for X, y in data[5:]:
        c.learn_many(X, y)
    assert any(not np.allclose(x, y) for x, y in zip(a.get_weights(), c.get_weights()))


def test_bad_states_are_refused():
    a = new_learner()
    a.learn_many(*batches(1)[0])
    state = a.state_dict()
    with pytest.raises(LearnerStateInvalid):
        new_learner().load_state_dict(dict(state, schema_version=99))
    other = OnlineLearner(build_model(ModelParams(n_layers=3, dropout=0.0), 6, 0), ModelParams(n_layers=3))
    with pytest.raises(LearnerStateInvalid):
        other.load_state_dict(state)
    nadam = new_learner(params=ModelParams(dropout=0.0, optimizer="nadam"))
    with pytest.raises(LearnerStateInvalid):
        nadam.load_state_dict(state)


def test_rollback_with_weights_and_learning_rate_setter():
    learner = new_learner()
    X, y = batches(1)[0]
    learner.learn_many(X, y)
    good = learner.get_weights()
    before = learner.score_many(X)
    learner.set_learning_rate(1e6)
    assert learner.learning_rate == pytest.approx(1e6)
    learner.learn_many(X * 1e3, 1 - y)  # a wild step
    assert not np.allclose(learner.score_many(X), before)
    learner.set_weights(good)
    np.testing.assert_array_equal(learner.score_many(X), before)  # scorer follows the rollback
    learner.set_learning_rate(1e-3)
    state = learner.state_dict()
    restored = new_learner(seed=3)
    restored.load_state_dict(state)
    assert restored.learning_rate == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        learner.set_learning_rate(0.0)


def test_sample_weight_changes_the_step():
    X, y = batches(1, seed=2)[0]
    a, b = new_learner(), new_learner()
    w = np.where(y > 0.5, 50.0, 1.0).astype(np.float32)
    a.learn_many(X, y)
    b.learn_many(X, y, sample_weight=w)
    assert any(not np.allclose(x, z) for x, z in zip(a.get_weights(), b.get_weights()))
    with pytest.raises(ValueError):
        a.learn_many(X[:3], y[:2])


def test_uncompiled_model_is_compiled_from_params():
    import keras

    bare = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(1, activation="sigmoid")])
    assert not getattr(bare, "compiled", False)
    learner = OnlineLearner(bare, PARAMS)
    assert np.isfinite(learner.learn_many(*batches(1)[0]))


def test_a_non_finite_step_is_rejected_and_leaves_no_trace():
    """The NaN guard: a poisoned step changes neither the weights, nor the optimiser's
    moments and step count, nor what the scorer serves; a good step after it is served."""
    params = ModelParams(dropout=0.0)
    learner = OnlineLearner(build_model(params, n_inputs=4, seed=0), params)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 4)).astype(np.float32), (rng.random(32) < 0.3).astype(np.float32)
    assert learner.learn_many_guarded(X, y)[1]
    before, served = learner.state_dict(), learner.score_many(X)
    poisoned = y.copy()
    poisoned[0] = np.nan  # a NaN target makes the loss and every gradient NaN
    loss, accepted = learner.learn_many_guarded(X, poisoned)
    assert not np.isfinite(loss) and not accepted
    after = learner.state_dict()
    for a, b in zip(before["weights"] + before["optimizer_variables"], after["weights"] + after["optimizer_variables"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(learner.score_many(X), served)
    loss, accepted = learner.learn_many_guarded(X, y)
    assert np.isfinite(loss) and accepted and learner.steps == 2
    assert not np.array_equal(learner.score_many(X), served)
    np.testing.assert_allclose(learner.score_many(X), np.asarray(learner.model(X)).ravel(), atol=1e-5)


@pytest.mark.parametrize("params", [
    ModelParams(dropout=0.2, l2=1e-4, n_layers=3),
    ModelParams(activation="prelu", optimizer="nadam", l1=1e-5),
])
def test_a_step_is_keras_train_on_batch_bit_for_bit(params):
    """The compiled step (forward, loss with regularisation, gradients, optimiser) learns
    exactly what Keras's own ``train_on_batch`` learns, dropout masks included."""
    keras_model = build_model(params, n_inputs=6, seed=4)
    learner = OnlineLearner(build_model(params, n_inputs=6, seed=4), params)
    for i, (X, y) in enumerate(batches(30, seed=3, size=96)):
        expected = keras_model.train_on_batch(X, y, return_dict=True)["loss"]
        loss, accepted = learner.learn_many_guarded(X, y) if i % 2 else (learner.learn_many(X, y), True)
        assert accepted and loss == pytest.approx(expected, rel=1e-6)
    assert_same_weights(keras_model.get_weights(), learner.model.get_weights())
    assert_same_weights([np.asarray(v) for v in keras_model.optimizer.variables],
                        [np.asarray(v) for v in learner.model.optimizer.variables])
    X, _ = batches(1, seed=9)[0]
    np.testing.assert_allclose(learner.score_many(X), np.asarray(keras_model(X)).ravel(), atol=1e-5)
