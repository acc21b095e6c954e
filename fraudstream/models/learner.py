"""Keep training a scoring network on mini-batches of late-labelled rows.

The daemon owns *when* to learn (mini-batch size, replay, what a rejected step means); this
module owns *how*: one gradient step per call, the optimiser's moments kept across calls
and across restarts, and a numpy scorer kept in step with the weights.

A step is one call into one compiled TensorFlow graph: forward pass, loss, gradients, the
optimiser's update, the finiteness check of the loss and the new weights, the rollback of a
non-finite step, and the new weights read out for the scorer as one flat array. Done as
separate calls (``train_on_batch``, a snapshot, a read per variable) the Python and
dispatch around them cost three times the arithmetic of a 64-row mini-batch.
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
    the optimiser from ``params``. ``scorer`` always reflects the latest accepted weights.

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
        self.scorer = Scorer(model)
        self._step = None  # the compiled step, traced on first use (see _compile_step)

    # -- learning ------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Optimiser steps taken so far (survives save/load)."""
        return int(self.model.optimizer.iterations.numpy())

    def learn_many(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """One gradient step on this mini-batch, kept whatever it gives; returns its loss."""
        return self._run_step(X, y, sample_weight, guard=False)[0]

    def learn_many_guarded(self, X: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
        """One gradient step, kept only if its loss and every new weight are finite: the NaN
        guard. Returns ``(loss, accepted)``; a rejected step leaves the weights and the
        optimiser state (moments, step count) exactly as they were, and the scorer never
        sees its weights, so a scoring thread can never serve them.
        """
        return self._run_step(X, y, None, guard=True)

    def _run_step(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None,
                  guard: bool) -> tuple[float, bool]:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows, y {y.shape[0]}")
        if X.shape[0] == 0:
            raise ValueError("learn_many needs at least one row")
        if self._step is None:
            self._step = self._compile_step()
        args = (X, y) if sample_weight is None else (X, y, np.asarray(sample_weight, dtype=np.float32))
        loss, finite, flat = self._step(guard, *args)
        accepted = bool(finite) or not guard
        if accepted:
            self.scorer.publish(self.scorer.unflatten(flat.numpy()))
        return float(loss), accepted

    def _compile_step(self):
        """The step as one ``tf.function``; ``guard`` is a Python bool, so each value is
        traced once (as are calls with and without sample weights)."""
        import tensorflow as tf

        model = self.model
        trainable = list(model.trainable_variables)
        # what a rejected step must leave untouched: weights and every optimiser variable
        kept = [v.value for v in trainable] + [v.value for v in self._optimizer_variables()]
        served = [v.value for v in self.scorer.variables()]

        @tf.function(reduce_retracing=True)
        def step(guard: bool, X, y, sample_weight=None):
            # reads are snapshots: a later in-place update copies the buffer first
            before = [v.read_value() for v in kept] if guard else []
            with tf.GradientTape() as tape:
                y_pred = model(X, training=True)
                loss = model.compute_loss(x=X, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            model.optimizer.apply(tape.gradient(loss, trainable), trainable)
            flat = tf.concat([tf.reshape(v.read_value(), [-1]) for v in served], axis=0)
            finite = tf.math.is_finite(loss) & tf.reduce_all(tf.math.is_finite(flat))
            if guard and not finite:  # autograph: the rollback runs inside the graph
                for var, value in zip(kept, before):
                    var.assign(value)
            return loss, finite, flat

        return step

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

    # -- weights ---------------------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the model's weights (not the optimiser's; see :meth:`state_dict`)."""
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)
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
