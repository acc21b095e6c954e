"""Build the scoring network from :class:`~fraudstream.config.model.ModelParams`.

The network is a stack of dense layers ending in one sigmoid unit. Nothing else (no batch
normalisation, no custom layers) so that the numpy scorer can evaluate it exactly and the
``.keras`` file loads with ``safe_mode=True`` and no custom objects.
"""

from __future__ import annotations

import numpy as np

from fraudstream.config.model import ModelParams
from fraudstream.models.backend import keras

_INITIALIZERS = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "he_normal": keras.initializers.HeNormal,
    "he_uniform": keras.initializers.HeUniform,
    "lecun_normal": keras.initializers.LecunNormal,
    "lecun_uniform": keras.initializers.LecunUniform,
    "random_uniform": keras.initializers.RandomUniform,
}


def default_width(n_inputs: int) -> int:
    """Smallest power of two at least twice the input size (15 inputs -> 32 units).

    >>> default_width(15), default_width(16), default_width(1)
    (32, 32, 2)
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
    return 1 << (2 * n_inputs - 1).bit_length()


def layer_widths(params: ModelParams, n_inputs: int) -> list[int]:
    """Width of every hidden layer: the first from the rule or ``first_width``, then tapered.

    >>> layer_widths(ModelParams(n_layers=3), 15)
    [32, 16, 8]
    >>> layer_widths(ModelParams(n_layers=3, taper="constant", first_width=20), 15)
    [20, 20, 20]
    """
    width = params.first_width or default_width(n_inputs)
    widths = []
    for _ in range(params.n_layers):
        widths.append(width)
        if params.taper == "half":
            width = max(1, width // 2)
    return widths


def make_optimizer(params: ModelParams) -> keras.optimizers.Optimizer:
    """The optimiser named in ``params``; a fresh instance, so no state is shared."""
    common = {"learning_rate": params.learning_rate}
    if params.clipnorm is not None:
        common["clipnorm"] = params.clipnorm
    if params.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if params.optimizer == "nadam":
        return keras.optimizers.Nadam(**common)
    if params.optimizer == "adamax":
        return keras.optimizers.Adamax(**common)
    return keras.optimizers.SGD(momentum=params.momentum, **common)


def _initializer(name: str, seed: int) -> keras.initializers.Initializer:
    return _INITIALIZERS[name](seed=seed)


def build_model(params: ModelParams, n_inputs: int, seed: int | None = None) -> keras.Model:
    """A compiled binary classifier for ``n_inputs`` features.

    Every random part (kernel initialisers, dropout masks) takes a seed derived from
    ``seed`` (default ``params.seed``), so one seed always gives the same initial weights.

    >>> model = build_model(ModelParams(n_layers=2), n_inputs=15, seed=1)
    >>> [layer.units for layer in model.layers if hasattr(layer, "units")]
    [32, 16, 1]
    """
    seed = params.seed if seed is None else seed
    regularizer = (
        keras.regularizers.L1L2(l1=params.l1, l2=params.l2) if (params.l1 or params.l2) else None
    )
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_inputs,), name="features")]
    for i, width in enumerate(layer_widths(params, n_inputs)):
        layers.append(
            keras.layers.Dense(
                width,
                activation="relu" if params.activation == "relu" else None,
                kernel_initializer=_initializer(params.initializer, seed + 2 * i),
                bias_initializer="zeros",
                kernel_regularizer=regularizer,
                name=f"hidden_{i}",
            )
        )
        if params.activation == "prelu":
            layers.append(keras.layers.PReLU(name=f"prelu_{i}"))
        if params.dropout > 0:
            layers.append(keras.layers.Dropout(params.dropout, seed=seed + 2 * i + 1, name=f"dropout_{i}"))
    layers.append(
        keras.layers.Dense(
            1,
            activation="sigmoid",
            kernel_initializer=_initializer(params.initializer, seed + 1000),
            bias_initializer="zeros",
            name="fraud_probability",
        )
    )
    model = keras.Sequential(layers, name="fraudstream_mlp")
    compile_model(model, params)
    return model


def compile_model(model: keras.Model, params: ModelParams) -> None:
    """(Re)compile with a fresh optimiser and binary cross-entropy; no Keras metrics.

    Validation metrics are computed in numpy by :mod:`fraudstream.models.evaluation` at the
    end of each epoch: Keras's streaming AUC approximates with thresholds, ours is exact.
    """
    model.compile(optimizer=make_optimizer(params), loss="binary_crossentropy")


def fraud_weight(params: ModelParams, y: np.ndarray) -> float:
    """Weight of one fraud relative to one legitimate row under ``params``.

    ``imbalance: none`` gives 1; otherwise ``fraud_weight`` or, when that is None, the ratio
    of legitimate to fraudulent rows in ``y`` (fully balanced classes).
    """
    if params.imbalance == "none":
        return 1.0
    if params.fraud_weight is not None:
        return float(params.fraud_weight)
    y = np.asarray(y)
    n_pos = int((y > 0.5).sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return 1.0
    return n_neg / n_pos


def load_network(path, compile: bool = False) -> keras.Model:
    """A network saved as ``.keras`` (safe mode: no code is loaded); uncompiled by default,
    for a learner that brings its own optimiser."""
    return keras.saving.load_model(path, safe_mode=True, compile=compile)


def clone_network(model: keras.Model) -> keras.Model:
    """The same layers with weights of their own (initialised afresh, not copied)."""
    return keras.models.clone_model(model)
