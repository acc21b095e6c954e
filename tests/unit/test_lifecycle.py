"""Model lifecycle: the promotion / rollback rule, champion state, requests, CLI, metrics."""

from __future__ import annotations

import json
import math
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import LifecycleSettings, load_settings
from fraudstream.config.model import ModelParams
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.lifecycle import (
    ACK_FILE,
    REQUEST_FILE,
    ModelLifecycle,
    ModelRequests,
    ShadowWindow,
    promotion_verdict,
    read_ack,
    stored_versions,
    write_request,
)
from fraudstream.daemon.policies import handle_model_requests
from fraudstream.daemon.replay import ReplayHost
from fraudstream.daemon.state_io import read_state, write_state
from fraudstream.errors import ConfigInvalid
from fraudstream.models.builder import build_model
from fraudstream.models.learner import OnlineLearner
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import TRANSACTION, merged_events

RULE = LifecycleSettings(enabled=True, window=100, min_labels=50, promote_margin=0.02, rollback_margin=0.05)


# -- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("champion", "challenger", "rows", "expected"),
    [
        (0.50, 0.53, 60, "promote"),
        (0.50, 0.52, 60, None),  # not *more* than the margin
        (0.50, 0.47, 60, None),  # worse, but within the rollback margin: keep both
        (0.50, 0.44, 60, "rollback"),
        (0.50, 0.90, 49, None),  # too few labelled rows
        (None, 0.90, 60, None),  # no fraud in the window: AP undefined
    ],
)
def test_promotion_verdict(champion, challenger, rows, expected):
    assert promotion_verdict(champion, challenger, rows, RULE) == expected


def test_settings_refuse_min_labels_above_window():
    with pytest.raises(ConfigInvalid, match="lifecycle"):
        load_settings(lifecycle={"window": 100, "min_labels": 200})


def test_shadow_window_keeps_the_last_rows_and_round_trips():
    window = ShadowWindow(4)
    window.add_many([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0, 1, 0])
    window.add_many([0.7, 0.8], [0.9, 1.0], [1, 0])
    champion, challenger, labels = window.arrays()
    np.testing.assert_allclose(champion, [0.2, 0.3, 0.7, 0.8])
    np.testing.assert_allclose(challenger, [0.5, 0.6, 0.9, 1.0])
    assert labels.tolist() == [1, 0, 1, 0]
    again = ShadowWindow(4)
    again.load_state_dict(window.state_dict())
    assert again.metrics() == window.metrics()


# -- champion and challenger -----------------------------------------------------------------


def learner(n_inputs: int = 4, learning_rate: float = 0.01) -> OnlineLearner:
    params = ModelParams(dropout=0.0, learning_rate=learning_rate)
    return OnlineLearner(build_model(params, n_inputs, seed=0), params)


def train(lrn: OnlineLearner, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        X = rng.normal(size=(32, 4)).astype(np.float32)
        lrn.learn_many(X, (X[:, 0] > 0).astype(np.float32))


X_PROBE = np.random.default_rng(9).normal(size=(16, 4)).astype(np.float32)


def test_promote_copies_the_learner_and_rollback_resets_it():
    lrn = learner()
    life = ModelLifecycle(RULE, lrn.model, version=0)
    train(lrn, 5)
    assert not np.allclose(life.score_many(X_PROBE), lrn.score_many(X_PROBE))  # champion is frozen
    event = life.promote(lrn, version=5, event_time=100.0, reason="test")
    assert event["champion_before"] == 0 and event["champion_after"] == 5 and life.champion_version == 5
    np.testing.assert_allclose(life.score_many(X_PROBE), lrn.score_many(X_PROBE), atol=1e-6)
    train(lrn, 5, seed=1)
    assert not np.allclose(life.score_many(X_PROBE), lrn.score_many(X_PROBE))
    event = life.reset_challenger(lrn, version=10, event_time=200.0, reason="test")
    assert event["action"] == "rollback" and event["challenger_version"] == 10 and life.champion_version == 5
    np.testing.assert_allclose(lrn.score_many(X_PROBE), life.score_many(X_PROBE), atol=1e-6)
    assert lrn.steps == 0 and lrn.learning_rate == pytest.approx(0.01)  # moments forgotten, rate kept
    assert (life.promotions, life.rollbacks, len(life.history)) == (1, 1, 2)
    assert life.changed and life.since == 200.0
    life.changed = False  # as after a checkpoint: a rule rollback keeps the champion, asks for none
    life.reset_challenger(lrn, version=11, event_time=300.0, reason="test")
    assert not life.changed and life.rollbacks == 2


def test_check_promotes_a_better_challenger_then_rolls_back_a_worse_one():
    lrn = learner()
    life = ModelLifecycle(RULE, lrn.model, version=0)
    rng = np.random.default_rng(0)
    y = (rng.random(100) < 0.2).astype(int)
    noise = rng.random(100)
    life.observe_many(noise, 0.5 * noise + 0.5 * y, y, np.full(100, 10.0))  # challenger ranks frauds first
    event = life.check(lrn, version=7, event_time=10.0)
    assert event is not None and event["action"] == "promote" and life.champion_version == 7
    assert event["challenger_ap"] > event["champion_ap"] + RULE.promote_margin
    assert len(life.window) == 0
    # rows scored before the promotion (event time <= 10) no longer judge the new pair
    life.observe_many(noise, 0.5 * noise + 0.5 * y, y, np.full(100, 10.0))
    assert len(life.window) == 0 and life.rows_stale == 100
    life.observe_many(0.5 * noise + 0.5 * y, noise, y, np.full(100, 11.0))  # now the challenger is worse
    event = life.check(lrn, version=9, event_time=11.0)
    assert event is not None and event["action"] == "rollback" and life.champion_version == 7


def test_check_keeps_the_champion_when_the_two_are_alike():
    lrn = learner()
    life = ModelLifecycle(RULE, lrn.model, version=0)
    rng = np.random.default_rng(1)
    y = (rng.random(100) < 0.2).astype(int)
    scores = 0.5 * rng.random(100) + 0.3 * y
    life.observe_many(scores, scores, y, np.full(100, 1.0))
    assert life.check(lrn, version=3, event_time=1.0) is None and life.champion_version == 0


def test_lifecycle_state_round_trip(tmp_path):
    lrn = learner()
    life = ModelLifecycle(RULE, lrn.model, version=0)
    train(lrn, 3)
    life.promote(lrn, version=3, event_time=50.0, reason="test")
    life.observe_many([0.1, 0.9], [0.2, 0.8], [0, 1], [60.0, 61.0])
    write_state(tmp_path, "lifecycle", life.state_dict())
    other = ModelLifecycle(RULE, learner().model, version=0)
    other.load_state_dict(read_state(tmp_path, "lifecycle"))
    assert other.champion_version == 3 and other.since == 50.0 and other.history == life.history
    assert other.window.metrics() == life.window.metrics() and other.promotions == 1
    np.testing.assert_allclose(other.score_many(X_PROBE), life.score_many(X_PROBE), atol=1e-7)


# -- in the pipeline ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream():
    sim = simulate(SimulatorSettings(customers=150, terminals=300, label_delay="1d"), days=6, seed=3)
    return [Incoming(TX if kind == TRANSACTION else LABEL, event) for kind, event in merged_events(sim)]


def run(pipe: Engine, batches) -> list:
    return [pipe.process(batches[i:i + 400]) for i in range(0, len(batches), 400)]


def probe_for(pipe: Engine) -> np.ndarray:
    """A fixed matrix of the pipeline's width."""
    return np.random.default_rng(5).normal(size=(8, pipe.features.n_features)).astype(np.float32)


class Trained:
    """One pipeline with the lifecycle on, trained once for the tests below.

    Margins no model clears keep the rule out of it. After the first 1,500 events the learner
    (version ``early``) is promoted by hand and checkpointed (``ckpt-1``); after 1,000 more
    the learner is at ``late`` and checkpointed again (``ckpt-2``, champion still ``early``).
    """

    def __init__(self, stream, directory):
        self.settings = load_settings(
            lifecycle={"enabled": True, "window": 300, "min_labels": 100, "promote_margin": 1.0, "rollback_margin": 1.0},
            training={"minibatch_size": 32},
        )
        pipe = Engine.create(self.settings)
        self.probe = probe_for(pipe)
        self.initial_scores = pipe.learner.score_many(self.probe)
        self.outs = run(pipe, stream[:1500])
        self.trained_steps = pipe.trainer.steps
        self.champion_after_training = pipe.lifecycle.champion_version
        self.champion_scores_after_training = pipe.score_served(self.probe)
        self.early, self.early_weights = pipe.model_version, pipe.learner.get_weights()
        pipe.lifecycle.promote(pipe.learner, pipe.model_version, pipe.pending.now, "test", trigger="manual")
        self.store = CheckpointStore(directory)
        pipe.save_checkpoint(self.store, {}, reason="test")
        run(pipe, stream[1500:2500])
        self.late = pipe.model_version
        self.info = pipe.save_checkpoint(self.store, {}, reason="test")
        self.served_scores = pipe.score_served(self.probe)
        self.pending = pipe.pending.state_dict()
        self.history = list(pipe.lifecycle.history)
        self.changed_after_save = pipe.lifecycle.changed

    def restore(self, directory=None) -> tuple[Engine, CheckpointStore]:
        """A pipeline resumed from ``ckpt-2``; with ``directory``, from a copy of the store there."""
        store = self.store
        if directory is not None:
            shutil.copytree(self.store.directory, directory, dirs_exist_ok=True)
            store = CheckpointStore(directory)
        return Engine.from_checkpoint(self.settings, store.latest_valid()), store

    def reference(self, weights) -> OnlineLearner:
        model = build_model(self.settings.model, len(self.probe[0]))
        lrn = OnlineLearner(model, self.settings.model)
        lrn.set_weights(weights)
        return lrn


@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    return Trained(stream, tmp_path_factory.mktemp("trained"))


def test_lifecycle_off_serves_the_learner(stream):
    pipe = Engine.create(load_settings(training={"minibatch_size": 32}))
    outs = run(pipe, stream[:1200])
    assert pipe.lifecycle is None and pipe.trainer.steps > 0
    assert all(o.shadow_scored is None and not o.lifecycle_events for o in outs)
    version = pipe.model_version  # scores carry the learner's version as the batch starts
    last = pipe.process(stream[1200:1600])
    assert last.scores and {s["model_version"] for _, s in last.scores} == {version}
    assert pipe.served_version == pipe.model_version
    np.testing.assert_allclose(pipe.score_served(last.scored_X), pipe.learner.score_many(last.scored_X))


def test_lifecycle_on_serves_the_champion_and_shadows_the_learner(trained):
    assert trained.trained_steps > 0 and trained.champion_after_training == 0
    # the champion is still the initial model, while the learner trained
    np.testing.assert_allclose(trained.champion_scores_after_training, trained.initial_scores, atol=1e-6)
    last = [o for o in trained.outs if o.scores][-1]
    assert {s["model_version"] for _, s in last.scores} == {0}
    assert last.shadow_scored.shape == last.scored.shape and not np.allclose(last.shadow_scored, last.scored)
    assert any(o.joined is not None and len(o.joined.ids) for o in trained.outs)


def test_checkpoint_round_trip_keeps_champion_and_shadow_scores(trained):
    assert trained.info.meta["lifecycle"]["champion_version"] == trained.early < trained.late
    assert trained.info.meta["model_version"] == trained.late and not trained.changed_after_save
    again, store = trained.restore()
    assert again.lifecycle.champion_version == trained.early and again.served_version == trained.early
    assert again.model_version == trained.late and again.lifecycle.history == trained.history
    np.testing.assert_allclose(again.score_served(trained.probe), trained.served_scores, atol=1e-6)
    np.testing.assert_allclose(again.pending.state_dict()["shadow"], trained.pending["shadow"])
    assert not np.allclose(trained.pending["shadow"], trained.pending["score"])
    roles = {v: sorted(role for _, role in held) for v, held in stored_versions(store).items()}
    assert roles == {trained.late: ["challenger"], trained.early: ["challenger", "champion", "champion"]}


def test_requests_promote_and_roll_back(trained, tmp_path):
    pipe, store = trained.restore(tmp_path)
    requests = ModelRequests(tmp_path, every_s=0.0)
    assert handle_model_requests(pipe, requests, store) is False  # nothing asked, nothing changed
    early = trained.reference(trained.early_weights)
    late_scores = pipe.learner.score_many(trained.probe)

    write_request(tmp_path, "promote")  # the challenger, now
    assert handle_model_requests(pipe, requests, store) is True
    ack = read_ack(tmp_path)
    assert ack["status"] == "applied" and ack["champion_version"] == trained.late
    assert not (tmp_path / REQUEST_FILE).exists() and pipe.served_version == trained.late
    np.testing.assert_allclose(pipe.score_served(trained.probe), late_scores, atol=1e-6)

    write_request(tmp_path, "promote", trained.early)  # a version kept in a checkpoint
    handle_model_requests(pipe, requests, store)
    assert read_ack(tmp_path)["status"] == "applied" and pipe.served_version == trained.early
    np.testing.assert_allclose(pipe.score_served(trained.probe), early.score_many(trained.probe), atol=1e-6)
    np.testing.assert_allclose(pipe.learner.score_many(trained.probe), late_scores, atol=1e-6)  # learner untouched

    write_request(tmp_path, "rollback", trained.early)
    handle_model_requests(pipe, requests, store)
    assert read_ack(tmp_path)["status"] == "applied"
    np.testing.assert_allclose(pipe.learner.score_many(trained.probe), early.score_many(trained.probe), atol=1e-6)
    assert (pipe.lifecycle.promotions, pipe.lifecycle.rollbacks) == (3, 1)  # one before the checkpoint

    write_request(tmp_path, "promote", 999_999)
    handle_model_requests(pipe, requests, store)
    ack = read_ack(tmp_path)
    assert ack["status"] == "failed" and "999999" in ack["message"] and pipe.served_version == trained.early

    (tmp_path / REQUEST_FILE).write_text("{not json")
    handle_model_requests(pipe, requests, store)
    assert read_ack(tmp_path)["status"] == "failed" and not (tmp_path / REQUEST_FILE).exists()


def test_requests_are_refused_with_the_lifecycle_off(tmp_path):
    pipe = Engine.create(load_settings())
    write_request(tmp_path, "promote")
    assert handle_model_requests(pipe, ModelRequests(tmp_path), CheckpointStore(tmp_path)) is False
    ack = read_ack(tmp_path)
    assert ack["status"] == "failed" and "lifecycle.enabled" in ack["message"]


def test_monitor_counts_promotions_and_rollbacks_and_exports_ap(trained):
    pipe, _ = trained.restore()
    host = ReplayHost(pipe)  # a host without Kafka

    registry = CollectorRegistry()
    monitor = DaemonMonitor(trained.settings, registry, serve=False)
    monitor.attach(host)  # counts from before the restart are not counted again
    pipe.lifecycle.promote(pipe.learner, pipe.model_version, pipe.pending.now, "test")
    pipe.lifecycle.reset_challenger(pipe.learner, pipe.model_version, pipe.pending.now, "test")
    pipe.lifecycle.observe_many([0.2, 0.9], [0.1, 0.3], [0, 1], [pipe.pending.now + 1] * 2)
    monitor.on_idle(host)
    value = registry.get_sample_value
    assert value("fraudstream_model_promotions_total") == 1.0
    assert value("fraudstream_model_rollbacks_total") == 1.0
    assert value("fraudstream_model_average_precision", {"role": "champion"}) == 1.0
    assert value("fraudstream_model_average_precision", {"role": "challenger"}) == 1.0
    assert value("fraudstream_model_version") == trained.late  # the served one, just promoted


# -- the command line ----------------------------------------------------------------------------


def test_cli_model_list_promote_and_rollback(trained, tmp_path):
    shutil.copytree(trained.store.directory, tmp_path, dirs_exist_ok=True)
    runner = CliRunner()
    wide = {"COLUMNS": "200"}

    listed = runner.invoke(app, ["model", "list", "--dir", str(tmp_path)], env=wide)
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if line.count("│") > 2}
    assert "champion" in rows[str(trained.early)] and "challenger" in rows[str(trained.late)]
    assert "promotions 1, rollbacks 0" in listed.output

    unknown = runner.invoke(app, ["model", "promote", "--to", "424242", "--dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "424242" in unknown.output
    assert not (tmp_path / REQUEST_FILE).exists()

    missing_to = runner.invoke(app, ["model", "rollback", "--dir", str(tmp_path)])
    assert missing_to.exit_code != 0 and not (tmp_path / REQUEST_FILE).exists()

    asked = runner.invoke(app, ["model", "rollback", "--to", str(trained.early), "--dir", str(tmp_path)])
    assert asked.exit_code == 0, asked.output
    request = json.loads((tmp_path / REQUEST_FILE).read_text())
    assert request["action"] == "rollback" and request["to_version"] == trained.early

    listed = runner.invoke(app, ["model", "list", "--dir", str(tmp_path)], env=wide)
    assert f"waiting request: rollback to version {trained.early}" in listed.output

    # no daemon answers: --wait gives up with exit 1
    waited = runner.invoke(app, ["model", "promote", "--dir", str(tmp_path), "--wait", "0.3"])
    assert waited.exit_code == 1 and "no answer" in waited.output
    assert not (tmp_path / ACK_FILE).exists()


def test_cli_model_list_without_checkpoints(tmp_path):
    result = CliRunner().invoke(app, ["model", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "no valid checkpoint" in result.output


def test_a_change_before_any_event_has_no_event_time():
    lrn = learner()
    life = ModelLifecycle(RULE, lrn.model, version=0)
    event = life.promote(lrn, 0, float("-inf"), "before any event")
    assert event["event_time"] is None and math.isinf(life.since)


def test_serve_applies_a_request_after_the_next_call(trained, stream, tmp_path):
    from fraudstream.daemon.serve import ApiHost

    pipe, store = trained.restore(tmp_path)
    host = ApiHost(trained.settings, pipe, store)
    write_request(tmp_path, "promote")
    events = [i.value for i in stream[2500:2600] if i.kind == TX]
    scores = host.service.score(events)
    assert read_ack(tmp_path)["status"] == "applied" and pipe.served_version == trained.late
    assert {s["model_version"] for s in scores} == {trained.early}  # scored before the request was seen
    assert store.latest_valid().meta["lifecycle"]["champion_version"] == trained.late  # checkpointed
    info = host.service.model_info()
    assert info["served_version"] == trained.late and info["lifecycle"]["promotions"] == 2
    from fastapi.testclient import TestClient

    body = TestClient(host.app()).get("/v1/model").json()
    assert body["served_version"] == trained.late and body["model_version"] == trained.late
    assert body["lifecycle"]["champion_version"] == trained.late and "challenger" in body["lifecycle"]["window"]
