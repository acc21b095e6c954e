"""Artifact save/load: round trip, fresh-process scoring, checksums, incompatibility."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fraudstream.config.features import FeatureSpec
from fraudstream.config.model import ModelParams
from fraudstream.errors import FraudstreamError
from fraudstream.models.artifact import (
    MANIFEST_FILE,
    load_artifact,
    save_artifact,
    sha256_file,
)
from fraudstream.models.builder import build_model
from fraudstream.models.exceptions import ArtifactExists, ArtifactInvalid
from fraudstream.models.learner import OnlineLearner
from fraudstream.models.scorer import Scorer

PARAMS = ModelParams(n_layers=2, dropout=0.0, activation="prelu")
NAMES = [f"f{i}" for i in range(5)]
STATE = {
    "schema_version": 1,
    "normalizer": {"mean": np.arange(5, dtype=np.float64) / 3, "std": np.ones(5, np.float32),
                   "count": np.int64(7)},
    "windows": [{"entity": "customer", "keys": ["a", "b"]}],
    "fitted": True,
}


@functools.lru_cache(maxsize=None)
def trained_model(seed=0):
    """A model a few steps into training (so it has optimiser state); cached per seed."""
    model = build_model(PARAMS, n_inputs=5, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(128, 5)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.float32)
    for i in range(3):
        model.train_on_batch(X[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    return model


def save(path, model=None, **kw):
    return save_artifact(
        path, model or trained_model(), params=PARAMS, feature_spec=FeatureSpec(),
        feature_state=STATE, feature_names=NAMES, metrics={"average_precision": 0.5},
        data={"first_event": "2026-04-01T00:00:00+00:00"}, **kw)


def test_round_trip(tmp_path):
    model = trained_model()
    path = save(tmp_path / "art", model)
    files = sorted(p.name for p in path.iterdir())
    assert files == ["MANIFEST.json", "features.json", "features.npz", "metadata.json", "model.keras"]
    art = load_artifact(path, expected_inputs=5)
    assert art.feature_names == NAMES and art.n_inputs == 5
    assert art.params == PARAMS
    assert art.feature_spec == FeatureSpec().model_dump(mode="json")
    np.testing.assert_array_equal(art.feature_state["normalizer"]["mean"], STATE["normalizer"]["mean"])
    assert art.feature_state["normalizer"]["std"].dtype == np.float32
    assert art.feature_state["normalizer"]["count"] == 7
    assert art.feature_state["windows"] == STATE["windows"] and art.feature_state["fitted"] is True
    meta = art.metadata
    assert meta["metrics"] == {"average_precision": 0.5}
    assert {"python", "numpy", "keras"} <= set(meta["versions"])
    assert meta["hyperparameters"]["activation"] == "prelu"
    assert art.model_version == sha256_file(path / "model.keras")[:12]
    X = np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    np.testing.assert_array_equal(art.scorer().score_many(X), Scorer(model).score_many(X))
    assert not list(tmp_path.glob(".art*")), "temporary directories are cleaned up"


def test_fresh_process_scores_identically(tmp_path):
    model = trained_model(seed=2)
    path = save(tmp_path / "art", model)
    X = np.random.default_rng(3).normal(size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(
        f"""
        import numpy as np
        from fraudstream.models.artifact import load_artifact
        art = load_artifact({str(path)!r})
        X = np.load({str(tmp_path / 'X.npy')!r})
        np.save({str(tmp_path / 'numpy.npy')!r}, art.scorer().score_many(X))
        np.save({str(tmp_path / 'keras.npy')!r}, np.asarray(art.model(X, training=False)).ravel())
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "numpy.npy"), Scorer(model).score_many(X))
    np.testing.assert_allclose(np.load(tmp_path / "keras.npy"), np.asarray(model(X)).ravel(), atol=1e-6)


def test_loaded_model_keeps_optimizer_state(tmp_path):
    model = trained_model(seed=4)
    path = save(tmp_path / "art", model)
    loaded = load_artifact(path).model
    a, b = OnlineLearner(model, PARAMS), OnlineLearner(loaded, PARAMS)
    assert a.steps == b.steps == 3
    X = np.random.default_rng(5).normal(size=(64, 5)).astype(np.float32)
    y = (X[:, 1] > 0).astype(np.float32)
    for _ in range(3):
        a.learn_many(X, y)
        b.learn_many(X, y)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, atol=1e-6)


def rewrite_manifest(path: Path) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = sha256_file(path / name)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def expect_invalid(path, reason, **kw):
    with pytest.raises(ArtifactInvalid) as info:
        load_artifact(path, **kw)
    assert info.value.reason == reason
    assert isinstance(info.value, FraudstreamError)
    return info.value


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save(tmp_path_factory.mktemp("saved") / "art")


def test_missing_corrupt_and_incompatible(tmp_path, saved):
    def save(target):  # copies of one saved artifact, each damaged in its own way
        shutil.copytree(saved, target)
        return target

    expect_invalid(tmp_path / "nowhere", "missing")
    (tmp_path / "empty").mkdir()
    expect_invalid(tmp_path / "empty", "missing")

    path = save(tmp_path / "a")
    data = bytearray((path / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "model.keras").write_bytes(bytes(data))
    err = expect_invalid(path, "corrupt")
    assert "model.keras" in str(err)

    path = save(tmp_path / "b")
    (path / "features.json").unlink()
    expect_invalid(path, "missing")

    path = save(tmp_path / "c")
    (path / MANIFEST_FILE).write_text("{not json")
    expect_invalid(path, "corrupt")

    path = save(tmp_path / "d")
    meta = json.loads((path / "metadata.json").read_text())
    meta["schema_version"] = 99
    (path / "metadata.json").write_text(json.dumps(meta))
    rewrite_manifest(path)  # a consistent artifact from a future version
    expect_invalid(path, "incompatible")

    path = save(tmp_path / "e")
    err = expect_invalid(path, "incompatible", expected_inputs=6)
    assert "6" in str(err)

    path = save(tmp_path / "f")
    meta = json.loads((path / "metadata.json").read_text())
    meta["n_inputs"] = 4
    (path / "metadata.json").write_text(json.dumps(meta))
    rewrite_manifest(path)
    expect_invalid(path, "incompatible")

    path = save(tmp_path / "g")
    (path / "model.keras").write_bytes(b"PK not really a zip")
    rewrite_manifest(path)
    expect_invalid(path, "corrupt")


def test_overwrite_is_explicit_and_atomic(tmp_path):
    path = save(tmp_path / "art", trained_model(seed=0))
    v1 = load_artifact(path).model_version
    with pytest.raises(ArtifactExists):
        save(path, trained_model(seed=1))
    assert load_artifact(path).model_version == v1
    save(path, trained_model(seed=1), overwrite=True)
    assert load_artifact(path).model_version != v1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_state_that_needs_pickle_is_refused(tmp_path):
    with pytest.raises(TypeError):
        save_artifact(tmp_path / "x", trained_model(), params=PARAMS, feature_spec=FeatureSpec(),
                      feature_state={"obj": object()}, feature_names=NAMES)
    with pytest.raises(ValueError):
        save_artifact(tmp_path / "y", trained_model(), params=PARAMS, feature_spec=FeatureSpec(),
                      feature_state={}, feature_names=NAMES[:3])
    assert not list(tmp_path.iterdir())


def test_drift_reference_round_trip_and_must_name_the_model_features(tmp_path):
    from fraudstream.features.reference import reference_from

    X = np.random.default_rng(6).normal(size=(400, 5))
    reference = reference_from(X, bins=5, names=NAMES)
    art = load_artifact(save(tmp_path / "art", drift_reference=reference))
    assert art.drift_reference == reference
    assert load_artifact(save(tmp_path / "plain")).drift_reference is None
    with pytest.raises(ValueError, match="drift reference"):
        save(tmp_path / "bad", drift_reference=reference_from(X, bins=5, names=NAMES[::-1]))
    assert not (tmp_path / "bad").exists()
