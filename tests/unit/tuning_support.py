"""Shared pieces of the tuning tests: a small search space, a synthetic data set, counters."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.config.features import FeatureSpec
from fraudstream.config.model import ModelParams, SearchSpace, TuningParams
from fraudstream.models import tuning
from fraudstream.models.training import Dataset, EvalSet

SMALL_SPACE = SearchSpace(
    first_width=[None, 8], n_layers=[1, 2], dropout=[0.0, 0.2], l1=[0.0], l2=[0.0, 1e-4],
    learning_rate=[1e-3, 3e-3], optimizer=["adam", "nadam"], batch_size=[100],
    initializer=["glorot_uniform", "he_normal"],
)


def params(space=SMALL_SPACE, epochs=2, **kw):
    return ModelParams(tuning=TuningParams(epochs=epochs, search_space=space), **kw)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)

    def rows(n):
        X = rng.normal(size=(n, 5)).astype(np.float32)
        y = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * X[:, 0] - 4.5)))).astype(np.float32)
        return X, y

    Xt, yt = rows(1500)
    Xv, yv = rows(800)
    valid = EvalSet(Xv, yv, (np.arange(yv.size) % 200).astype(str), np.arange(yv.size) // 400)
    return Dataset(Xt, yt, valid, [f"f{i}" for i in range(5)], info={"train_rows": 1500})


@pytest.fixture
def count_fits(monkeypatch):
    calls = []
    original = tuning.FraudHyperModel.fit

    def counted(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        return original(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning.FraudHyperModel, "fit", counted)
    return calls


def search(data, out, **kw):
    kw.setdefault("feature_spec", FeatureSpec())
    kw.setdefault("feature_state", {"normalizer": {"mean": np.zeros(5)}})
    kw.setdefault("verbose", 0)
    return tuning.run_search(data, kw.pop("p", params()), out, **kw)
