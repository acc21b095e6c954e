"""Adapting after a drift: a faster learning rate, recent rows, a reservoir that forgets the
old pattern; all of it carried across a checkpoint."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.models.online_training import ReplayReservoir
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import TRANSACTION, merged_events


def rows(n: int, start: float = 0.0) -> np.ndarray:
    return (start + np.arange(n, dtype=np.float32))[:, None].repeat(2, axis=1)


def test_forget_keeps_a_share_of_each_class_and_new_rows_refill_it():
    res = ReplayReservoir(size=100, n_features=2, fraud_share=0.5, seed=3)
    y = np.zeros(1_000)
    y[::10] = 1
    res.add_many(rows(1_000), y)  # old rows: values below 1,000
    assert res.filled == [50, 50]
    assert res.forget(0.2) == 80 and res.filled == [10, 10] and res.seen == [10, 10]
    kept = np.concatenate([res.rows[0][:10], res.rows[1][:10]])[:, 0]
    assert len(np.unique(kept)) == 20 and set(kept) <= set(range(1_000))  # distinct old rows
    res.add_many(rows(80, start=5_000.0), np.tile([0, 1], 40))  # new rows take the freed room first
    assert res.filled == [50, 50]
    new_share = np.mean(np.concatenate([res.rows[0][:50], res.rows[1][:50]])[:, 0] >= 5_000)
    assert new_share == 0.8
    assert res.forget(1.0) == 0 and res.filled == [50, 50]
    with pytest.raises(ValueError):
        res.forget(1.5)


def test_forget_is_in_the_reservoir_state():
    res = ReplayReservoir(size=40, n_features=2, seed=1)
    res.add_many(rows(200), np.tile([0, 0, 0, 1], 50))
    res.forget(0.5)
    again = ReplayReservoir(size=40, n_features=2, seed=9)
    again.load_state_dict(res.state_dict())
    assert again.filled == res.filled and again.seen == res.seen
    np.testing.assert_array_equal(again.sample(30)[0], res.sample(30)[0])


@pytest.fixture(scope="module")
def stream():
    sim = simulate(SimulatorSettings(customers=150, terminals=300, label_delay="1d"), days=6, seed=3)
    return [Incoming(TX if kind == TRANSACTION else LABEL, event) for kind, event in merged_events(sim)]


def run(pipe: Engine, batches) -> None:
    for i in range(0, len(batches), 400):
        pipe.process(batches[i:i + 400])


def test_adapt_survives_a_checkpoint_and_ends_after_its_steps(stream, tmp_path):
    settings = load_settings(training={"minibatch_size": 32, "replay_ratio": 1.0})
    pipe = Engine.create(settings)
    run(pipe, stream[:2_000])
    lr, before = pipe.learner.learning_rate, len(pipe.trainer.reservoir)
    assert pipe.trainer.steps > 0 and before > 100

    pipe.adapt(lr_multiplier=3.0, recent_share=0.8, steps=4, replay_keep=0.25)
    until = pipe.trainer.steps + 4
    assert pipe.learner.learning_rate == pytest.approx(3 * lr)
    assert pipe.trainer.replay_ratio == pytest.approx(0.25)  # 20% replay per 80% fresh rows
    assert len(pipe.trainer.reservoir) == pytest.approx(before / 4, abs=2)

    info = pipe.save_checkpoint(CheckpointStore(tmp_path), {}, reason="test")
    resumed = Engine.from_checkpoint(settings, info)
    assert resumed.adaptation.until_step == until
    assert resumed.learner.learning_rate == pytest.approx(3 * lr)
    assert resumed.trainer.replay_ratio == pytest.approx(0.25)
    assert resumed.trainer.reservoir.filled == pipe.trainer.reservoir.filled
    assert resumed.trainer.reservoir.seen == pipe.trainer.reservoir.seen

    # a second detection while adapting restarts the period, keeping the (recent) reservoir
    resumed.adapt(lr_multiplier=2.0, recent_share=0.5, steps=4, replay_keep=0.0)
    assert len(resumed.trainer.reservoir) == len(pipe.trainer.reservoir)
    assert resumed.learner.learning_rate == pytest.approx(2 * lr)
    assert resumed.trainer.replay_ratio == pytest.approx(1.0)

    start = resumed.trainer.steps
    run(resumed, stream[2_000:4_000])
    assert resumed.trainer.steps >= start + 4
    assert resumed.adaptation.until_step is None  # over: back to the normal settings
    assert resumed.learner.learning_rate == pytest.approx(lr)
    assert resumed.trainer.replay_ratio == pytest.approx(1.0)
    assert len(resumed.trainer.reservoir) > len(pipe.trainer.reservoir)  # refilled with new rows
