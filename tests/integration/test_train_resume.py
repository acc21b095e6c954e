"""A ``train`` SIGKILLed after epoch 3 and started again resumes there and ends with the
weights of an uninterrupted run; the best epoch so far is on disk while it trains.

Cost: one small simulation and three 5-epoch trainings of about 20k rows (~1 min on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fraudstream.models.artifact import load_artifact
from fraudstream.models.epochs import training_dir
from sigkill import kill_when

EPOCHS = 5
KILL_AFTER = 3
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", FRAUDSTREAM__MODEL__EARLY_STOPPING_PATIENCE="0")


def train_args(events, out):
    return [sys.executable, "-m", "fraudstream", "train", "--data", str(events), "--out", str(out),
            "--epochs", str(EPOCHS), "--train-days", "40", "--seed", "3"]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "events.csv"
    subprocess.run([sys.executable, "-m", "fraudstream", "simulate", "--days", "60", "--customers", "300",
                    "--terminals", "600", "--seed", "3", "--out", str(path), "--inline-labels",
                    "--no-label-events", "--no-progress"], check=True, capture_output=True, env=ENV)
    return path


def epochs_done(out) -> int:
    try:
        return json.loads((training_dir(out) / "state.json").read_text())["loop"]["epochs_done"]
    except (FileNotFoundError, ValueError):  # not written yet (the rename is atomic: never half)
        return 0


def test_a_killed_train_resumes_after_its_last_epoch(tmp_path, events):
    whole = tmp_path / "whole"
    done = subprocess.run(train_args(events, whole), capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not training_dir(whole).exists(), "the per-epoch state is removed once the artifact is saved"

    cut = tmp_path / "cut"
    kill_when(train_args(events, cut), lambda: epochs_done(cut) >= KILL_AFTER, ENV)
    resumed_at = epochs_done(cut)
    # the kill lands while epoch 4 trains; a stalled machine could let epoch 4 finish first
    assert KILL_AFTER <= resumed_at < EPOCHS
    assert not cut.exists()
    best = load_artifact(training_dir(cut) / "best")  # the best epoch so far, usable as it is
    assert best.metadata["data"]["partial"] is True

    rerun = subprocess.run(train_args(events, cut), capture_output=True, text=True, env=ENV, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed after epoch {resumed_at}" in rerun.stderr
    printed = [line.split()[1] for line in rerun.stderr.splitlines() if line.startswith("epoch ")]
    assert printed == [f"{e}/{EPOCHS}" for e in range(resumed_at + 1, EPOCHS + 1)], rerun.stderr
    assert not training_dir(cut).exists()

    a, b = load_artifact(whole), load_artifact(cut)
    gap = max(float(np.max(np.abs(wa - wb))) for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True))
    print(f"killed after epoch {resumed_at}; largest weight difference from the uninterrupted run: {gap:.3g}")
    assert gap <= 1e-6  # the tolerance; on one machine and thread count it is 0 (the same batches, the same state)
    for name, values in a.metadata["history"].items():
        assert b.metadata["history"][name] == pytest.approx(values, abs=1e-6), name
    assert a.metadata["metrics"] == pytest.approx(b.metadata["metrics"], abs=1e-6)
