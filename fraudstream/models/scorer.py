"""Score feature rows in numpy, without Keras's per-call overhead.

``model.predict`` costs tens of milliseconds per call whatever the batch size, and even
``model(X)`` pays for TensorFlow's dispatch; the daemon scores every polled batch, often a
handful of rows. The network is a small stack of dense layers, so a few ``X @ W + b`` in
numpy give the same numbers in microseconds. The weights are copied from the Keras model;
call :meth:`Scorer.refresh` after each training step so scores follow learning.

The copies are published as one tuple swapped in a single assignment, so a scoring thread
never sees half of one step's weights and half of another's, and a trainer can check new
weights (:meth:`Scorer.read`) before anyone scores with them (:meth:`Scorer.publish`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.models.backend import keras
from fraudstream.models.exceptions import ModelUnsupported

_ACTIVATIONS = ("relu", "linear", "sigmoid")


@dataclass
class _Dense:
    layer: keras.layers.Dense
    activation: str

    def variables(self) -> tuple[keras.Variable, ...]:
        return (self.layer.kernel, self.layer.bias)


@dataclass
class _PReLU:
    layer: keras.layers.PReLU

    def variables(self) -> tuple[keras.Variable, ...]:
        return (self.layer.alpha,)


Weights = tuple[tuple[np.ndarray, ...], ...]  # per scoring step: (kernel, bias) or (alpha,)


def _activation_name(layer: keras.layers.Dense) -> str:
    name = keras.activations.serialize(layer.activation)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    if name not in _ACTIVATIONS:
        raise ModelUnsupported(f"layer {layer.name!r}: activation {name!r} is not supported")
    return name


class Scorer:
    """Numpy forward pass of a dense Keras classifier (Dense, PReLU, Dropout layers).

    Dropout is the identity at inference, so it is skipped. Output is the sigmoid of the
    last unit, shape ``(n,)``, equal to ``model(X, training=False)`` within float32 rounding.

    >>> from fraudstream.config.model import ModelParams
    >>> from fraudstream.models.builder import build_model
    >>> model = build_model(ModelParams(), n_inputs=4, seed=0)
    >>> X = np.ones((3, 4), dtype=np.float32)
    >>> scorer = Scorer(model)
    >>> bool(np.allclose(scorer.score_many(X), np.asarray(model(X)).ravel(), atol=1e-5))
    True
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self._steps: list[_Dense | _PReLU] = []
        self._weights: Weights = ()
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dense):
                if not layer.use_bias:
                    raise ModelUnsupported(f"layer {layer.name!r}: dense layers need a bias")
                self._steps.append(_Dense(layer, _activation_name(layer)))
            elif isinstance(layer, keras.layers.PReLU):
                if layer.shared_axes:
                    raise ModelUnsupported(f"layer {layer.name!r}: shared_axes is not supported")
                self._steps.append(_PReLU(layer))
            elif isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer)):
                continue
            else:
                raise ModelUnsupported(
                    f"layer {layer.name!r} ({type(layer).__name__}) cannot be scored in numpy"
                )
        dense = [s for s in self._steps if isinstance(s, _Dense)]
        if not dense or dense[-1].activation != "sigmoid" or dense[-1].layer.units != 1:
            raise ModelUnsupported("the last dense layer must be one sigmoid unit")
        self.n_inputs = int(dense[0].layer.kernel.shape[0])
        self._layout: list[list[tuple[int, int, tuple[int, ...]]]] = []  # per step: (start, end, shape)
        at = 0
        for step in self._steps:
            self._layout.append([])
            for v in step.variables():
                shape = tuple(int(n) for n in v.shape)
                self._layout[-1].append((at, at + int(np.prod(shape)), shape))
                at += int(np.prod(shape))
        self._flat_size = at
        self.refresh()

    def variables(self) -> list[keras.Variable]:
        """The model's variables that scoring reads, in the order of :meth:`unflatten`."""
        return [v for step in self._steps for v in step.variables()]

    def read(self) -> Weights:
        """Copies of the Keras model's current weights, not yet used for scoring."""
        return tuple(tuple(np.array(v.numpy(), dtype=np.float32) for v in step.variables()) for step in self._steps)

    def unflatten(self, flat: np.ndarray) -> Weights:
        """:meth:`variables`' values from one float32 array of them all, raveled and
        concatenated in order (what a training step reads out in one piece): views, no copy."""
        if flat.size != self._flat_size:
            raise ValueError(f"expected {self._flat_size} values, got {flat.size}")
        return tuple(tuple(flat[start:end].reshape(shape) for start, end, shape in step) for step in self._layout)

    def publish(self, weights: Weights) -> None:
        """Score with ``weights`` from now on (one reference swap: safe across threads)."""
        self._weights = weights

    def refresh(self) -> None:
        """Copy the current weights out of the Keras model and score with them."""
        self.publish(self.read())

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability of each row of ``X`` (``(n, d)`` float32) as a ``(n,)`` array."""
        h = np.asarray(X, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.n_inputs:
            raise ValueError(f"expected a (n, {self.n_inputs}) matrix, got shape {h.shape}")
        for step, arrays in zip(self._steps, self._weights):  # one published set throughout
            if isinstance(step, _Dense):
                kernel, bias = arrays
                h = h @ kernel
                h += bias
                if step.activation == "relu":
                    np.maximum(h, 0.0, out=h)
                elif step.activation == "sigmoid":
                    # exp overflows to inf for very negative logits: 1/(1+inf) is the right 0.
                    with np.errstate(over="ignore"):
                        np.negative(h, out=h)
                        np.exp(h, out=h)
                    h += 1.0
                    np.reciprocal(h, out=h)
            else:
                h = np.where(h >= 0.0, h, arrays[0] * h)
        return h[:, 0]
