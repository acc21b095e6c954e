"""Tuning: resume after a finished or an interrupted run; leaderboard and best artifact."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from fraudstream.models import tuning
from fraudstream.models.artifact import load_artifact
from fraudstream.models.learner import OnlineLearner

from tuning_support import SMALL_SPACE, count_fits, data, params, search  # noqa: F401 - fixtures


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_random_search_resumes_and_names_the_best(tmp_path, data, count_fits):
    first = search(data, tmp_path, strategy="random", max_trials=2)
    assert (first.trials_before, first.trials_run_now, len(count_fits)) == (0, 2, 2)
    trial0 = next((tmp_path / "search" / "random").glob("trial_0*/trial.json"))
    before = trial0.read_text()

    second = search(data, tmp_path, strategy="random", max_trials=4)
    assert (second.trials_before, second.trials_run_now) == (2, 2)
    assert len(count_fits) == 4  # only two new trials were fitted
    assert trial0.read_text() == before  # earlier results kept, not recomputed

    rows = read_csv(tmp_path / "leaderboard.csv")
    assert len(rows) == 4 and all(r["status"] == "COMPLETED" for r in rows)
    aps = [float(r["val_ap"]) for r in rows]
    assert aps == sorted(aps, reverse=True)
    assert rows[0]["trial_id"] == second.best_trial
    md = (tmp_path / "leaderboard.md").read_text()
    assert f"Best trial: **{second.best_trial}**" in md
    assert md.count("\n| ") == 5  # header + 4 trials

    # The best artifact holds the best trial's best epoch: same AP as the leaderboard.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        art = load_artifact(tmp_path / "best")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    learner = OnlineLearner(art.model, art.params)  # ready for the daemon to keep learning
    assert np.isfinite(learner.learn_many(data.X_train[:64], data.y_train[:64]))
    assert art.metadata["metrics"]["average_precision"] == pytest.approx(aps[0], abs=1e-6)
    assert art.metadata["tuning"]["trial_id"] == second.best_trial
    assert [f["name"] for f in art.drift_reference["features"]] == data.feature_names  # for PSI
    best_hp = {k: v for k, v in rows[0].items() if k in tuning.SPACE_FIELDS}
    assert art.params.optimizer == best_hp["optimizer"]
    assert art.params.n_layers == int(best_hp["n_layers"])


def test_interrupted_search_resumes_the_cut_trial(tmp_path, data, monkeypatch):
    original = tuning.FraudHyperModel.fit
    calls = []

    def interrupting(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a trial
        return original(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning.FraudHyperModel, "fit", interrupting)
    with pytest.raises(KeyboardInterrupt):
        search(data, tmp_path, strategy="random", max_trials=3)
    cut = calls[1]
    oracle = json.loads((tmp_path / "search" / "random" / "oracle.json").read_text())
    assert oracle["ongoing_trials"], "the interrupted trial is recorded as running"

    report = search(data, tmp_path, strategy="random", max_trials=3)
    assert report.trials_before == 1 and report.trials_run_now == 2
    assert calls[2] == cut  # the cut trial is retried first, with the same values
    assert len(calls) == 4 and len(report.leaderboard) == 3


def test_params_from_trial_values():
    p = tuning.params_from_values(params(), {"first_width": tuning.RULE_WIDTH, "n_layers": 3,
                                             "optimizer": "adamax", "learning_rate": 0.01})
    assert (p.first_width, p.n_layers, p.optimizer, p.learning_rate) == (None, 3, "adamax", 0.01)
    assert tuning.OBJECTIVE.name == "val_ap" and tuning.OBJECTIVE.direction == "max"


def test_a_kill_after_a_trial_ends_does_not_run_it_again(tmp_path, data, count_fits):
    """KerasTuner writes oracle.json with a finished trial still listed as ongoing and takes
    it off only at the next write: a search killed in between reloads with that trial queued
    for a retry. It is complete, so it is not run again."""
    first = search(data, tmp_path, strategy="random", max_trials=1, p=params(epochs=1))
    oracle = tmp_path / "search" / "random" / "oracle.json"
    state = json.loads(oracle.read_text())
    state["ongoing_trials"] = {"tuner0": first.best_trial}  # the file as the kill left it
    oracle.write_text(json.dumps(state))
    trial = tmp_path / "search" / "random" / f"trial_{first.best_trial}" / "trial.json"
    before = trial.read_text()
    again = search(data, tmp_path, strategy="random", max_trials=2, p=params(epochs=1))
    assert (again.trials_before, again.trials_run_now, len(count_fits)) == (1, 1, 2)
    assert trial.read_text() == before
