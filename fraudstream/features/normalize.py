"""Standardisation of feature rows: fitted once, or kept running in streaming.

The statistics are the count, mean and sum of squared deviations (Welford's ``M2``), which
merge exactly across batches (Chan et al.), so a running normaliser that sees rows in
batches holds the same numbers as one fitted on all of them at once.
"""

from __future__ import annotations

import numpy as np

from fraudstream.config.features import NormalizerSettings
from fraudstream.features.exceptions import FeatureStateInvalid


class Normalizer:
    """Per-feature mean and standard deviation, with a floor on the deviation.

    >>> import numpy as np
    >>> n = Normalizer(2, NormalizerSettings())
    >>> n.fit_many(np.array([[0.0, 5.0], [2.0, 5.0]])).transform_many(np.array([[1.0, 5.0]]))
    array([[0., 0.]], dtype=float32)
    """

    def __init__(self, n_features: int, settings: NormalizerSettings):
        self.settings = settings
        self.n_features = n_features
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.mean = np.zeros(self.n_features)
        self.m2 = np.zeros(self.n_features)

    @property
    def fitted(self) -> bool:
        return self.count > 0

    @property
    def std(self) -> np.ndarray:
        if self.count == 0:
            return np.ones(self.n_features)
        return np.maximum(np.sqrt(self.m2 / self.count), self.settings.std_floor)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        return X

    def fit_many(self, X: np.ndarray) -> Normalizer:
        """Forget previous statistics and fit on ``X``."""
        self._reset()
        return self.learn_many(X)

    def learn_many(self, X: np.ndarray) -> Normalizer:
        """Fold a batch of rows into the statistics (exact parallel merge)."""
        X = self._check(X)
        nb = len(X)
        if nb == 0:
            return self
        mb = X.mean(axis=0)
        m2b = ((X - mb) ** 2).sum(axis=0)
        na = self.count
        n = na + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (na * nb / n)
        self.count = n
        return self

    def transform_many(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std`` as float32, clipped to ``+-clip`` when set."""
        Z = (self._check(X) - self.mean) / self.std
        if self.settings.clip is not None:
            np.clip(Z, -self.settings.clip, self.settings.clip, out=Z)
        return Z.astype(np.float32)

    def state_dict(self) -> dict:
        return {"count": int(self.count), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    def load_state_dict(self, state: dict) -> Normalizer:
        mean = np.asarray(state["mean"], dtype=np.float64)
        m2 = np.asarray(state["m2"], dtype=np.float64)
        if mean.shape != (self.n_features,) or m2.shape != (self.n_features,):
            raise FeatureStateInvalid(f"normaliser state has {mean.shape} features, expected {self.n_features}")
        self.count, self.mean, self.m2 = int(state["count"]), mean, m2
        return self
