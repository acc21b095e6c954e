"""Normalisation: fitted and running statistics, std floor, clip, state."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.config.features import FeatureSpec, NormalizerSettings
from fraudstream.features import FeaturePipeline, FeatureStateInvalid, Normalizer, Transaction


def test_fit_then_normalize_standardises_as_float32():
    rng = np.random.default_rng(0)
    X = rng.normal([5.0, -2.0, 100.0], [2.0, 0.5, 30.0], size=(5000, 3))
    n = Normalizer(3, NormalizerSettings()).fit_many(X)
    Z = n.transform_many(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(n.std, X.std(axis=0), rtol=1e-12)


def test_constant_feature_uses_the_floor_and_clip_bounds_values():
    X = np.array([[1.0, 3.0], [1.0, 5.0]])
    n = Normalizer(2, NormalizerSettings(std_floor=0.01, clip=5.0)).fit_many(X)
    assert n.std.tolist() == [0.01, 1.0]
    assert n.transform_many(np.array([[2.0, 4.0]])).tolist() == [[5.0, 0.0]]


def test_batches_merge_exactly_like_one_fit():
    rng = np.random.default_rng(1)
    X = rng.lognormal(3, 1, size=(3000, 4))
    running = Normalizer(4, NormalizerSettings(mode="running"))
    for chunk in np.array_split(X, 17):
        running.learn_many(chunk)
    whole = Normalizer(4, NormalizerSettings()).fit_many(X)
    np.testing.assert_allclose(running.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(running.std, whole.std, rtol=1e-10)
    assert running.count == 3000


def test_unfitted_normalizer_is_the_identity():
    assert Normalizer(2, NormalizerSettings()).transform_many(np.array([[3.0, -1.0]])).tolist() == [[3.0, -1.0]]


def test_shape_is_checked():
    with pytest.raises(ValueError):
        Normalizer(2, NormalizerSettings()).fit_many(np.zeros((3, 4)))


def test_running_mode_learns_from_streamed_rows_and_round_trips():
    spec = FeatureSpec.model_validate({"normalizer": {"mode": "running"}})
    pipe = FeaturePipeline(spec)
    base = 1_775_001_600_000_000
    txs = [Transaction(f"t{i}", base + i * 60_000_000, f"c{i % 7}", f"m{i % 5}", float(i % 13)) for i in range(400)]
    X1 = pipe.update_many(txs[:250])
    X2 = pipe.update_many(txs[250:])
    assert pipe.normalizer.count == 400
    np.testing.assert_allclose(pipe.normalizer.mean, np.vstack([X1, X2]).mean(axis=0), rtol=1e-12, atol=1e-12)
    again = FeaturePipeline(spec).load_state_dict(pipe.state_dict(include_windows=False))
    assert np.array_equal(again.normalize(X2), pipe.normalize(X2))
    assert again.n_entities == {name: 0 for name in pipe.n_entities}


def test_fitted_mode_does_not_move_while_streaming():
    pipe = FeaturePipeline()
    tx = Transaction("t", 1_775_001_600_000_000, "c", "m", 10.0)
    pipe.fit_normalizer(np.ones((4, pipe.n_features)) * np.arange(pipe.n_features))
    before = pipe.normalizer.state_dict()
    pipe.update_many([tx])
    assert pipe.normalizer.state_dict() == before


def test_normaliser_state_of_another_width_is_refused():
    with pytest.raises(FeatureStateInvalid):
        Normalizer(3, NormalizerSettings()).load_state_dict({"count": 1, "mean": [0.0], "m2": [0.0]})
