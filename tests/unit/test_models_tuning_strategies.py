"""Tuning: the exact grid, a changed space, Bayesian and Hyperband within the budget."""

from __future__ import annotations

import csv
import itertools

import pytest

from fraudstream.models import tuning
from fraudstream.models.exceptions import TuningFailed

from tuning_support import SMALL_SPACE, count_fits, data, params, search  # noqa: F401 - fixtures


def test_grid_enumerates_the_configured_grid_exactly(tmp_path, data, count_fits):
    space = SMALL_SPACE.model_copy(update=dict(
        first_width=[8], n_layers=[1, 2], dropout=[0.0], l2=[0.0], learning_rate=[1e-3, 1e-2],
        optimizer=["adam"], initializer=["glorot_uniform"]))
    p = params(space, epochs=1)
    assert space.grid_size() == 4
    report = search(data, tmp_path, strategy="grid", p=p)
    seen = {(v["n_layers"], v["learning_rate"]) for v in count_fits}
    assert len(count_fits) == 4
    assert seen == set(itertools.product([1, 2], [1e-3, 1e-2]))
    assert len(report.leaderboard) == 4
    again = search(data, tmp_path, strategy="grid", p=p, max_trials=10)
    assert again.trials_run_now == 0 and len(count_fits) == 4


def test_changed_space_needs_restart(tmp_path, data):
    search(data, tmp_path, strategy="random", max_trials=1, p=params(epochs=1))
    other = params(SMALL_SPACE.model_copy(update={"n_layers": [3]}), epochs=1)
    with pytest.raises(TuningFailed, match="--restart"):
        search(data, tmp_path, strategy="random", max_trials=2, p=other)
    report = search(data, tmp_path, strategy="random", max_trials=1, p=other, restart=True)
    assert report.trials_run_now == 1
    assert report.leaderboard[0].hyperparameters["n_layers"] == 3


@pytest.mark.parametrize(("strategy", "epochs"), [("bayesian", 1), ("hyperband", 9)])
def test_other_strategies_run_within_the_trial_budget(tmp_path, data, strategy, epochs, count_fits):
    # Hyperband with max_epochs 9 (factor 3) opens with 9 one-epoch trials: the budget of 3
    # is what stops it.
    report = search(data, tmp_path, strategy=strategy, max_trials=3, p=params(epochs=epochs))
    assert len(report.leaderboard) == 3 == len(count_fits)
    assert all(r.status == "COMPLETED" for r in report.leaderboard)
    assert report.leaderboard[0].metrics["val_ap"] >= report.leaderboard[-1].metrics["val_ap"]


def test_a_search_where_every_trial_fails_says_so(tmp_path, data, monkeypatch):
    def broken(self, hp, model, *args, **kwargs):
        raise ValueError("broken trial")

    monkeypatch.setattr(tuning.FraudHyperModel, "fit", broken)
    with pytest.raises(TuningFailed, match="no trial completed"):
        search(data, tmp_path, strategy="random", max_trials=2)
    with open(tmp_path / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert all(r["status"] in ("FAILED", "INVALID") and r["val_ap"] == r["best_epoch"] == "" for r in rows)


@pytest.mark.parametrize(("strategy", "epochs"), [("bayesian", 1), ("hyperband", 9)])
def test_every_strategy_takes_the_prequential_objective(tmp_path, data, strategy, epochs):
    """The oracles propose, a judge handed in scores (here a stand-in for the replay: the
    model's AP on the validation rows, minus a penalty by mini-batch size, so the online
    values reach it); Hyperband's epochs are the offline fit's."""
    seen = []

    def judge(model, p, online):
        seen.append((p.epochs, online["minibatch_size"]))
        ap = data.valid.metrics(tuning.Scorer(model).score_many(data.valid.X), p.top_k)["average_precision"]
        return {"prequential_ap": ap - online["minibatch_size"] / 1000, "prequential_roc_auc": 0.5,
                "prequential_card_precision": 0.0}

    report = search(data, tmp_path, strategy=strategy, max_trials=3, p=params(epochs=epochs), evaluate=judge)
    assert len(report.leaderboard) == 3 == len(seen)
    assert all(r.status == "COMPLETED" for r in report.leaderboard)
    scores = [r.metrics["prequential_ap"] for r in report.leaderboard]
    assert scores == sorted(scores, reverse=True)
    assert report.training == {k: report.leaderboard[0].hyperparameters[k] for k in tuning.TRAINING_FIELDS}
    if strategy == "hyperband":
        assert {e for e, _ in seen} == {1}  # its first bracket: one-epoch trials
    assert (tmp_path / "search" / f"{strategy}-prequential" / "fraudstream_search.json").exists()


def test_a_damaged_search_file_is_named_not_a_traceback(tmp_path, data):
    search(data, tmp_path, strategy="random", max_trials=1, p=params(epochs=1))
    trial = next((tmp_path / "search" / "random").glob("trial_*/trial.json"))
    assert not list(trial.parent.glob("*.tmp"))  # written under a temporary name, renamed
    trial.write_text(trial.read_text()[:50])  # what a kill in the middle of an in-place write leaves
    with pytest.raises(TuningFailed, match="unreadable file .*--restart"):
        search(data, tmp_path, strategy="random", max_trials=2, p=params(epochs=1))
