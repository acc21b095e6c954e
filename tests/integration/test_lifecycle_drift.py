"""Champion / challenger through a concept drift, on the daemon's own per-batch step.

A simulated world (1,000 customers, 40 days, labels a day late) changes on day 20 to the
``stealth`` fraud pattern. One pipeline with the lifecycle on learns for 14 days; its state
is checkpointed and resumed three ways over the remaining 26 days:

* **frozen**: training off and no promotion possible: the day-14 champion's scores alone;
* **broken**: the learner's learning rate set 500 times too high;
* **good**: the learner as configured.

The broken challenger must never be promoted (only rolled back) and the scores it serves
must rank frauds as well as the frozen champion's; the good challenger must be promoted
after the change and serve better scores than the frozen champion after it. No broker: the
batches go straight to :meth:`Engine.process`, as in a replay. About 40 s.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from fraudstream.config import load_settings
from fraudstream.config.simulate import DriftChange, SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.models.evaluation import average_precision
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import TRANSACTION, merged_events

pytestmark = pytest.mark.slow

DAYS, DRIFT_DAY, RESUME_DAY = 40, 20, 14
BATCH = 500
DAY = 86_400.0
LIFECYCLE = {"enabled": True, "window": 3_000, "min_labels": 1_500, "promote_margin": 0.02, "rollback_margin": 0.05}


class Run:
    """What one pipeline served and shadowed over the stream, and its lifecycle events."""

    def __init__(self, pipe: Engine, batches: list[list[Incoming]]):
        served, shadow, labels, times = [], [], [], []
        self.events = []
        for batch in batches:
            out = pipe.process(batch)
            self.events.extend(out.lifecycle_events)
            joined = out.joined
            if joined is not None and len(joined.ids):
                served.append(joined.scores)
                shadow.append(joined.shadow_scores)
                labels.append(joined.labels)
                times.append(joined.times)
        self.served, self.shadow, self.labels, self.times = (np.concatenate(p) for p in (served, shadow, labels, times))
        self.pipe = pipe

    def ap(self, scores: np.ndarray, since: float) -> float:
        keep = self.times >= since
        return average_precision(self.labels[keep], scores[keep])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sim = simulate(
        SimulatorSettings(customers=1_000, terminals=2_000, label_delay="1d",
                          drift=(DriftChange(day=DRIFT_DAY, preset="stealth"),)),
        days=DAYS, seed=0,
    )
    start = sim.transactions["timestamp"].min().timestamp()
    events = [Incoming(TX if kind == TRANSACTION else LABEL, event) for kind, event in merged_events(sim)]
    resume_at = start + RESUME_DAY * DAY
    split = next(i for i, e in enumerate(events)
                 if np.datetime64(e.value["timestamp"].rstrip("Z"), "s").astype(np.int64) >= resume_at)
    # The handbook features: with the default (recommended) ones, the untrained day-0 champion
    # already ranks frauds (AP 0.07-0.35 on the ratio and log amount) better than the fresh
    # challenger of the first days, which is rolled back to it again and again, so no champion
    # is promoted during the warm-up this scenario needs.
    settings = load_settings(lifecycle=LIFECYCLE, features={"preset": "handbook"})
    warm = Engine.create(settings)
    for i in range(0, split, BATCH):
        warm.process(events[i:min(i + BATCH, split)])
    store = CheckpointStore(tmp_path_factory.mktemp("lifecycle"))
    info = warm.save_checkpoint(store, {}, reason="test")
    rest = [events[i:i + BATCH] for i in range(split, len(events), BATCH)]
    return settings, info, rest, start + DRIFT_DAY * DAY


def test_broken_challenger_is_never_promoted_and_a_good_one_is_after_the_drift(world):
    settings, info, rest, drift_at = world
    # no learning and margins no model can clear: the day-14 champion serves throughout
    frozen_settings = settings.model_copy(update={
        "training": settings.training.model_copy(update={"enabled": False}),
        "lifecycle": settings.lifecycle.model_copy(update={"promote_margin": 1.0, "rollback_margin": 1.0}),
    })
    frozen = Run(Engine.from_checkpoint(frozen_settings, info), rest)
    champion_version = frozen.pipe.served_version
    assert not frozen.events and champion_version > 0  # a champion was promoted while warming up

    broken_pipe = Engine.from_checkpoint(settings, info)
    broken_pipe.learner.set_learning_rate(500 * settings.model.learning_rate)
    broken = Run(broken_pipe, rest)
    good = Run(Engine.from_checkpoint(settings, info), rest)

    since = rest[0][0].value["timestamp"]
    start = float(good.times.min())
    figures = {
        "champion alone": frozen.ap(frozen.served, start),
        "broken: served": broken.ap(broken.served, start),
        "broken: challenger": broken.ap(broken.shadow, start),
        "good: served": good.ap(good.served, start),
        "good: served after drift": good.ap(good.served, drift_at),
        "champion alone after drift": frozen.ap(frozen.served, drift_at),
    }
    promoted_after_drift = [e for e in good.events if e["action"] == "promote" and e["event_time"] >= drift_at]
    print(f"from {since}: " + ", ".join(f"{k} AP {v:.4f}" for k, v in figures.items()))
    print(f"broken: {sum(e['action'] == 'rollback' for e in broken.events)} rollbacks; good: promoted at days "
          + ", ".join(f"{(e['event_time'] - drift_at) / DAY + DRIFT_DAY:.1f}" for e in good.events if e["action"] == "promote"))

    # the broken learner really is broken, yet never served
    assert figures["broken: challenger"] < figures["champion alone"] - 0.1
    assert not [e for e in broken.events if e["action"] == "promote"]
    assert any(e["action"] == "rollback" for e in broken.events)
    assert broken.pipe.served_version == champion_version
    assert abs(figures["broken: served"] - figures["champion alone"]) <= 0.01
    # the good learner takes over after the change, and serves better than the old champion
    assert promoted_after_drift
    assert figures["good: served after drift"] > figures["champion alone after drift"]
