"""A checkpoint is the state when it was captured, however late it is written, and learning
in the background changes nothing that is learned."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import TRANSACTION, merged_events


@pytest.fixture(scope="module")
def batches():
    sim = simulate(SimulatorSettings(customers=100, terminals=200), days=10, seed=3)
    events = [Incoming(TX if kind == TRANSACTION else LABEL, event)
              for kind, event in merged_events(sim, inline_labels=False, label_events=True)]
    return [events[i:i + 200] for i in range(0, len(events), 200)]


def settings():
    return load_settings(training={"minibatch_size": 16, "replay_size": 256})


def test_a_checkpoint_written_later_holds_the_state_at_capture(tmp_path, batches):
    pipe = Engine.create(settings())
    half = len(batches) // 2
    for batch in batches[:half]:
        pipe.process(batch)
    expected = {"steps": pipe.trainer.steps, "pending": len(pipe.pending), "digest": str(pipe.trainer.digest),
                "events_seen": pipe.features.state_dict()["counters"]["events_seen"],
                "weights": pipe.learner.get_weights()}
    write = pipe.capture_checkpoint({("transactions", 0): half}, reason="test")
    for batch in batches[half:]:  # the live state moves on before the copy is written
        pipe.process(batch)
    assert pipe.trainer.steps > expected["steps"]
    info = CheckpointStore(tmp_path, keep=2).save(write)
    again = Engine.from_checkpoint(settings(), info)
    assert info.meta["steps"] == again.trainer.steps == expected["steps"]
    assert len(again.pending) == expected["pending"]
    assert str(again.trainer.digest) == expected["digest"]
    assert again.features.state_dict()["counters"]["events_seen"] == expected["events_seen"]
    for a, b in zip(again.learner.get_weights(), expected["weights"]):
        np.testing.assert_array_equal(a, b)
    assert again.offsets == {("transactions", 0): half}


def test_learning_in_the_background_learns_what_inline_learning_learns(batches):
    inline, background = Engine.create(settings()), Engine.create(settings())
    background.learn_in_background()
    reported = 0
    try:
        for batch in batches:
            inline.process(batch)
            reported += len(background.process(batch).steps)  # steps finished by then
        background.drain()
        reported += sum(len(steps) for steps, _ in background.background.take_results())
    finally:
        background.close()
    assert reported == background.trainer.steps == inline.trainer.steps > 0
    assert background.trainer.digest == inline.trainer.digest
    assert background.trainer.rows_learned == inline.trainer.rows_learned
    for a, b in zip(background.learner.get_weights(), inline.learner.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
