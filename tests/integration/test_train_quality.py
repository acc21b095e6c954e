"""End to end: simulate 90 days, ``fraudstream train``, beat river's logistic regression,
and load the artifact in a fresh process that scores exactly as the trainer did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fraudstream.config import load_settings
from fraudstream.models.artifact import load_artifact
from fraudstream.models.evaluation import average_precision
from fraudstream.models.training import prepare_dataset

CUSTOMERS = 1000
DAYS = 90
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "fraudstream", *args],
        capture_output=True, text=True, env=ENV, timeout=timeout,
    )
    assert proc.returncode == 0, f"fraudstream {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    events = tmp / "events.csv"
    run("simulate", "--days", str(DAYS), "--customers", str(CUSTOMERS),
        "--terminals", str(2 * CUSTOMERS), "--seed", "11", "--out", str(events),
        "--inline-labels", "--no-label-events", "--no-progress")
    out = tmp / "artifact"
    proc = run("train", "--data", str(events), "--out", str(out), "--epochs", "10")
    return events, out, proc


def river_baseline_ap(X_train, y_train, X_valid, y_valid, names) -> float:
    """river's StandardScaler | LogisticRegression, one pass over the training rows in time
    order (how river learns), then scored on the validation rows."""
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, label in zip(X_train.tolist(), y_train.tolist()):
        model.learn_one(dict(zip(names, row)), bool(label))
    scores = np.array([model.predict_proba_one(dict(zip(names, row))).get(True, 0.0)
                       for row in X_valid.tolist()])
    return average_precision(y_valid, scores)


def test_train_beats_river_logistic_regression(trained):
    events, out, proc = trained
    meta = json.loads((out / "metadata.json").read_text())
    nn_ap = meta["metrics"]["average_precision"]
    assert "average precision" in proc.stderr and f"{nn_ap:.4f}" in proc.stderr

    split = meta["data"]["split"]
    assert split["train_end"].startswith("2026-05-31") or split["train_end"] > split["train_start"]
    days = lambda a, b: (np.datetime64(split[b][:19]) - np.datetime64(split[a][:19])) / np.timedelta64(1, "D")  # noqa: E731
    assert days("train_start", "train_end") == 60 and days("train_end", "valid_start") == 7

    from fraudstream.features import read_events

    settings = load_settings(None)
    data = prepare_dataset(read_events(events), settings.features, settings.model.split)
    assert data.info["train_rows"] == meta["data"]["train_rows"]
    assert data.info["valid_rows"] == meta["data"]["valid_rows"]
    assert data.valid.y.sum() >= 50, "enough validation frauds for a meaningful AP"
    baseline = river_baseline_ap(data.X_train, data.y_train, data.valid.X, data.valid.y,
                                 data.feature_names)
    print(f"validation AP: network {nn_ap:.4f}, river logistic regression {baseline:.4f}")
    assert nn_ap >= baseline


def test_artifact_scores_identically_in_a_fresh_process(trained, tmp_path):
    events, out, _ = trained
    code = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd
        from fraudstream.features import read_events
        from fraudstream.models.artifact import load_artifact
        from fraudstream.models.evaluation import average_precision

        art = load_artifact({str(out)!r})
        pipe = art.feature_pipeline()
        frame = read_events({str(events)!r})
        X = pipe.normalize(pipe.transform_many(frame))
        ts = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        split = art.metadata["data"]["split"]
        valid = np.asarray((ts >= pd.Timestamp(split["valid_start"])) & (ts < pd.Timestamp(split["valid_end"])))
        scores = art.scorer().score_many(X[valid])
        np.save({str(tmp_path / "scores.npy")!r}, scores)
        np.save({str(tmp_path / "X.npy")!r}, X[valid])
        print(average_precision(frame["label"].to_numpy()[valid], scores))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    fresh_ap = float(proc.stdout.strip().splitlines()[-1])
    meta = json.loads((Path(out) / "metadata.json").read_text())
    # Features rebuilt from the artifact's spec and state, scored by the saved model, give
    # the validation AP the trainer measured on its best epoch.
    assert fresh_ap == pytest.approx(meta["metrics"]["average_precision"], abs=1e-6)
    X = np.load(tmp_path / "X.npy")
    here = load_artifact(out).scorer().score_many(X)
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), here)
    keras_scores = np.asarray(load_artifact(out).model(X, training=False)).ravel()
    np.testing.assert_allclose(here, keras_scores, atol=1e-5)


def test_tune_cli_resumes_and_names_the_best_trial(trained, tmp_path):
    events, _, _ = trained
    config = tmp_path / "tune.yaml"
    config.write_text(textwrap.dedent(
        """
        model:
          early_stopping_patience: 0
          tuning:
            epochs: 2
            search_space:
              batch_size: [256, 512]
        """
    ))
    out = tmp_path / "tune"
    first = run("tune", "--data", str(events), "--config", str(config), "--strategy", "random",
                "--max-trials", "2", "--out", str(out))
    assert "resumed" not in first.stderr
    second = run("tune", "--data", str(events), "--config", str(config), "--strategy", "random",
                 "--max-trials", "4", "--out", str(out))
    assert "resumed: 2 trials were already complete, 2 ran now" in " ".join(second.stderr.split())

    import csv

    with open(out / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    best = rows[0]
    assert float(best["val_ap"]) == max(float(r["val_ap"]) for r in rows)
    assert f"Best trial: **{best['trial_id']}**" in (out / "leaderboard.md").read_text()
    art = load_artifact(out / "best")
    assert art.metadata["tuning"]["trial_id"] == best["trial_id"]
    assert art.metadata["metrics"]["average_precision"] == pytest.approx(float(best["val_ap"]), abs=1e-6)
    print(f"best tuned trial {best['trial_id']}: val AP {float(best['val_ap']):.4f}")
