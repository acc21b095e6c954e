"""Keep training a scoring network on mini-batches of late-labelled rows.

The daemon owns *when* to learn (mini-batch size, replay, the NaN guard's policy); this
module owns *how*: one ``train_on_batch`` step per call, the optimiser's moments kept
across calls and across restarts, and a numpy scorer kept in step with the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.config.model import ModelParams
from fraudstream.models.backend import keras
from fraudstream.models.builder import compile_model
from fraudstream.models.exceptions import LearnerStateInvalid
from fraudstream.models.scorer import Scorer

STATE_SCHEMA_VERSION = 1


class OnlineLearner:
    """Mini-batch learner around a compiled Keras model.

    If the model is not compiled (or was loaded without its optimiser), it is compiled with
    the optimiser from ``params``. ``scorer`` always reflects the latest weights.

    >>> from fraudstream.models.builder import build_model
    >>> params = ModelParams(dropout=0.0)
    >>> learner = OnlineLearner(build_model(params, n_inputs=3, seed=0), params)
    >>> X = np.zeros((8, 3), dtype=np.float32); y = np.zeros(8, dtype=np.float32)
    >>> loss = learner.learn_many(X, y)
    >>> learner.steps
    1
    """

    def __init__(self, model: keras.Model, params: ModelParams):
        self.model = model
        self.params = params
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
            compile_model(model, params)
        # A fresh step function: one traced earlier by ``fit`` on other input shapes would
        # be relaxed to unknown rank on our first call, which Keras's losses reject.
        model.make_train_function(force=True)
        self.scorer = Scorer(model)
        self._latest = None  # weights learned but not yet published to the scorer
        self._shadow = None  # (save, restore) compiled lazily by snapshot()

    # -- learning ------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Optimiser steps taken so far (survives save/load)."""
        return int(self.model.optimizer.iterations.numpy())

    def learn_many(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, publish: bool = True
    ) -> float:
        """One gradient step on this mini-batch; returns its loss (may be NaN: the caller's
        guard decides whether to roll back with :meth:`restore`).

        With ``publish=False`` the scorer keeps the previous weights until :meth:`publish`, so
        a guard can check the new ones (:meth:`weights_finite`) before anything scores with them.
        """
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows, y {y.shape[0]}")
        if X.shape[0] == 0:
            raise ValueError("learn_many needs at least one row")
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        logs = self.model.train_on_batch(X, y, sample_weight=sw, return_dict=True)
        self._latest = self.scorer.read()
        if publish:
            self.publish()
        return float(logs["loss"])

    def publish(self) -> None:
        """Score with the weights of the last :meth:`learn_many` from now on."""
        if self._latest is not None:
            self.scorer.publish(self._latest)
            self._latest = None

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """Fraud probabilities from the current weights (numpy path, see :class:`Scorer`)."""
        return self.scorer.score_many(X)

    @property
    def learning_rate(self) -> float:
        return float(np.asarray(self.model.optimizer.learning_rate))

    def set_learning_rate(self, value: float) -> None:
        """Change the step size in place, keeping the optimiser's moments (drift adaptation)."""
        if not value > 0:
            raise ValueError(f"learning rate must be > 0, got {value}")
        self.model.optimizer.learning_rate.assign(value)

    # -- weights (for the NaN guard) -----------------------------------------------------

    def snapshot(self) -> None:
        """Copy weights and optimiser variables aside, inside TensorFlow, in one call.

        Reading ~20 variables out to numpy costs milliseconds per training step; a compiled
        assign into shadow variables costs tens of microseconds. :meth:`restore` undoes
        everything since the last snapshot (the NaN guard's rollback).
        """
        if self._shadow is None:
            import tensorflow as tf

            live = [v.value for v in self.model.trainable_variables] + [
                v.value for v in self._optimizer_variables()
            ]
            shadow = [tf.Variable(v, trainable=False) for v in live]

            @tf.function
            def save() -> None:
                for copy, var in zip(shadow, live):
                    copy.assign(var)

            @tf.function
            def restore() -> None:
                for copy, var in zip(shadow, live):
                    var.assign(copy)

            self._shadow = (save, restore)
        self._shadow[0]()

    def restore(self) -> None:
        """Return to the last :meth:`snapshot` (weights and optimiser state)."""
        self._shadow[1]()
        self._latest = None
        self.scorer.refresh()

    def weights_finite(self) -> bool:
        """Whether the newest weights (learned, published or not) are all finite (on copies)."""
        return self.scorer.finite(self._latest) if self._latest is not None else self.scorer.weights_finite()

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the model's weights (not the optimiser's; see :meth:`state_dict`)."""
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)
        self._latest = None
        self.scorer.refresh()

    def reset_optimizer(self) -> None:
        """Forget the optimiser's moments and step count, keeping the learning rate.

        After the weights are replaced by another model's (a rollback to the served model),
        moments gathered on the discarded weights would push the new ones the old way.
        """
        optimizer = self.model.optimizer
        keep = {id(optimizer.learning_rate)} if isinstance(optimizer.learning_rate, keras.Variable) else set()
        for var in self._optimizer_variables():
            if id(var) not in keep:
                var.assign(np.zeros(var.shape, dtype=var.dtype))

    # -- state ---------------------------------------------------------------------------

    def _optimizer_variables(self) -> list[keras.Variable]:
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return list(optimizer.variables)

    def state_dict(self) -> dict[str, Any]:
        """Weights and optimiser variables (moments, step count, learning rate) as arrays."""
        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "optimizer": type(self.model.optimizer).__name__,
            "weights": self.get_weights(),
            "optimizer_variables": [np.array(v.numpy(), copy=True) for v in self._optimizer_variables()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; shapes must match this model exactly."""
        if state.get("schema_version") != STATE_SCHEMA_VERSION:
            raise LearnerStateInvalid(
                f"schema version {state.get('schema_version')!r}, expected {STATE_SCHEMA_VERSION}"
            )
        if state.get("optimizer") != type(self.model.optimizer).__name__:
            raise LearnerStateInvalid(
                f"state is for optimizer {state.get('optimizer')!r}, "
                f"model uses {type(self.model.optimizer).__name__!r}"
            )
        weights = state["weights"]
        current = self.model.get_weights()
        if len(weights) != len(current) or any(
            np.shape(a) != np.shape(b) for a, b in zip(weights, current)
        ):
            raise LearnerStateInvalid("weight shapes do not match the model")
        variables = self._optimizer_variables()
        opt_values = state["optimizer_variables"]
        if len(opt_values) != len(variables) or any(
            tuple(np.shape(a)) != tuple(v.shape) for a, v in zip(opt_values, variables)
        ):
            raise LearnerStateInvalid("optimizer variable shapes do not match the model")
        self.model.set_weights(weights)
        for var, value in zip(variables, opt_values):
            var.assign(np.asarray(value, dtype=var.dtype))
        self.scorer.refresh()
