"""The network built from ModelParams: widths, layers, initialisers, optimisers, seeds."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from fraudstream.config.model import ModelParams, SearchSpace
from fraudstream.models.builder import (
    build_model,
    default_width,
    fraud_weight,
    layer_widths,
    make_optimizer,
)


@pytest.mark.parametrize(("n", "width"), [(1, 2), (2, 4), (3, 8), (15, 32), (16, 32), (17, 64), (40, 128)])
def test_default_width_is_smallest_power_of_two_at_least_twice_inputs(n, width):
    assert default_width(n) == width
    assert width >= 2 * n and width // 2 < 2 * n


def test_layer_widths_taper_and_override():
    assert layer_widths(ModelParams(n_layers=3), 15) == [32, 16, 8]
    assert layer_widths(ModelParams(n_layers=3, taper="constant"), 15) == [32, 32, 32]
    assert layer_widths(ModelParams(n_layers=2, first_width=100), 15) == [100, 50]
    assert layer_widths(ModelParams(n_layers=4, first_width=2), 15) == [2, 1, 1, 1]


def dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_built_model_structure():
    params = ModelParams(n_layers=3, activation="prelu", dropout=0.2, l1=1e-4, l2=1e-3,
                         initializer="he_uniform")
    model = build_model(params, n_inputs=15, seed=0)
    dense = dense_layers(model)
    assert [d.units for d in dense] == [32, 16, 8, 1]
    assert sum(isinstance(layer, keras.layers.PReLU) for layer in model.layers) == 3
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 3
    for d in dense[:-1]:
        assert d.activation.__name__ == "linear"  # PReLU follows as its own layer
        cfg = d.get_config()
        assert cfg["kernel_initializer"]["class_name"] == "HeUniform"
        assert cfg["bias_initializer"]["class_name"] == "Zeros"
        assert cfg["kernel_regularizer"]["config"] == pytest.approx({"l1": 1e-4, "l2": 1e-3})
    assert dense[-1].activation.__name__ == "sigmoid"
    assert model.inputs[0].shape[-1] == 15
    assert model.loss == "binary_crossentropy"


def test_relu_default_and_no_dropout_layer_when_zero():
    model = build_model(ModelParams(dropout=0.0), n_inputs=5, seed=0)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert all(d.activation.__name__ == "relu" for d in dense_layers(model)[:-1])
    assert dense_layers(model)[0].get_config()["kernel_regularizer"] is None


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adam", keras.optimizers.Adam), ("nadam", keras.optimizers.Nadam),
     ("adamax", keras.optimizers.Adamax), ("sgd", keras.optimizers.SGD)],
)
def test_optimizers(name, cls):
    opt = make_optimizer(ModelParams(optimizer=name, learning_rate=0.01))
    assert isinstance(opt, cls)
    assert float(np.asarray(opt.learning_rate)) == pytest.approx(0.01)
    model = build_model(ModelParams(optimizer=name), n_inputs=4, seed=0)
    assert isinstance(model.optimizer, cls)


def test_defaults_follow_the_rules():
    p = ModelParams()
    assert (p.activation, p.initializer, p.optimizer, p.learning_rate, p.batch_size) == (
        "relu", "glorot_uniform", "adam", 1e-3, 64)
    with pytest.raises(ValidationError):
        ModelParams(momentum=0.9)  # momentum only with sgd
    with pytest.raises(ValidationError):
        ModelParams(dropout=1.0)
    with pytest.raises(ValidationError):
        ModelParams(extra_key=1)
    with pytest.raises(ValidationError):
        SearchSpace(dropout=[0.1, 1.5])
    assert SearchSpace(n_layers=[1, 2], optimizer=["adam"], dropout=[0.0], l1=[0.0], l2=[0.0],
                       learning_rate=[1e-3, 1e-2], batch_size=[64], initializer=["he_normal"],
                       first_width=[None, 32]).grid_size() == 8


def test_same_seed_same_weights_other_seed_other_weights():
    params = ModelParams(n_layers=2)
    a = build_model(params, 15, seed=3).get_weights()
    b = build_model(params, 15, seed=3).get_weights()
    c = build_model(params, 15, seed=4).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_fraud_weight_policies():
    y = np.array([0] * 99 + [1])
    assert fraud_weight(ModelParams(imbalance="none"), y) == 1.0
    assert fraud_weight(ModelParams(imbalance="class_weight", fraud_weight=None), y) == 99.0
    assert fraud_weight(ModelParams(imbalance="class_weight"), y) == 10.0  # the default
    assert fraud_weight(ModelParams(imbalance="oversample", fraud_weight=5.0), y) == 5.0
