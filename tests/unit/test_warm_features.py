"""A daemon warmed from the history its stream continues computes the features offline
training would: its windows start full instead of empty."""

from __future__ import annotations

import dataclasses

import numpy as np

from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.engine import Engine
from fraudstream.features import FeaturePipeline, read_events
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions


def test_warmed_windows_give_the_offline_features_of_the_next_day(tmp_path):
    settings = load_settings(None)
    sim = simulate(SimulatorSettings(customers=150, terminals=300), days=41, seed=5)
    tx = sim.transactions
    history, everything = tmp_path / "history.jsonl", tmp_path / "all.jsonl"
    write_transactions(dataclasses.replace(sim, transactions=tx[tx["day"] < 40]), history, inline_labels=True)
    write_transactions(sim, everything, inline_labels=True)

    frame = read_events(everything, settings.features.fields)
    offline = FeaturePipeline(settings.features).feature_table(frame)
    next_day = set(tx.loc[tx["day"] == 40, "transaction_id"])
    expected = offline[offline["transaction_id"].isin(next_day)]
    expected_X = expected[offline.columns[3:]].to_numpy()  # id, time, label, then the features
    records = frame[frame["transaction_id"].isin(next_day)].to_dict("records")

    def next_day_rows(pipe: Engine) -> np.ndarray:
        rows, bad = pipe.features.parse_many(records)
        assert not bad
        rows.sort(key=lambda t: t.time_us)
        assert [t.transaction_id for t in rows] == list(expected["transaction_id"])
        return pipe.features.update_many(rows)

    warmed = Engine.create(settings)
    assert warmed.warm_features(history) == int((tx["day"] < 40).sum())
    np.testing.assert_allclose(next_day_rows(warmed), expected_X, rtol=1e-6, atol=1e-9)

    cold = Engine.create(settings)  # the same day without the history: windows nearly empty
    assert not np.allclose(next_day_rows(cold), expected_X)
