"""Training on a worker thread: order, draining, failures, and no unguarded weights served."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fraudstream.daemon.learning import BackgroundLearning, LearningFailed


def test_jobs_run_in_order_and_drain_waits_for_all():
    learning = BackgroundLearning()
    seen = []

    def job(i):
        time.sleep(0.002)
        seen.append(i)
        return i * 10

    for i in range(20):
        learning.submit(job, i)
    learning.drain()
    assert seen == list(range(20))  # drained: every job ran, in submission order
    assert learning.take_results() == [i * 10 for i in range(20)]
    assert learning.take_results() == []
    learning.close()


def test_unfinished_counts_queued_and_running_jobs():
    learning = BackgroundLearning()
    release = threading.Event()
    learning.submit(release.wait)  # runs, and holds the worker
    learning.submit(lambda: None)
    learning.submit(lambda: None)
    assert learning.unfinished() == 3
    release.set()
    learning.drain()
    assert learning.unfinished() == 0
    learning.close()


def test_a_failed_job_stops_learning_and_is_raised_in_the_loop():
    learning = BackgroundLearning()
    ran = []

    def boom():
        raise ValueError("bad rows")

    learning.submit(boom)
    with pytest.raises(LearningFailed) as err:
        learning.drain()
    assert isinstance(err.value.__cause__, ValueError)
    with pytest.raises(LearningFailed):
        learning.submit(ran.append, 1)
    learning.close()
    assert ran == []


def test_scores_never_use_weights_the_guard_rejected():
    """A step that blows up is visible to nobody: the scorer keeps the last accepted weights."""
    from fraudstream.config.model import ModelParams
    from fraudstream.models.builder import build_model
    from fraudstream.models.learner import OnlineLearner
    from fraudstream.models.online_training import OnlineTrainer

    params = ModelParams(dropout=0.0)
    learner = OnlineLearner(build_model(params, n_inputs=4, seed=0), params)
    trainer = OnlineTrainer(learner, 4, minibatch_size=16, replay_size=64, replay_ratio=0.0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 4)).astype(np.float32)
    y = (rng.random(16) < 0.3).astype(np.float32)
    poisoned = y.copy()
    poisoned[0] = np.nan  # NaN loss and NaN weights after the step

    learning = BackgroundLearning()
    stop = threading.Event()
    scored: list[np.ndarray] = []

    def score_meanwhile():
        while not stop.is_set():
            scored.append(learner.score_many(X))

    reader = threading.Thread(target=score_meanwhile)
    reader.start()
    try:
        for i in range(30):
            learning.submit(trainer.add_many, X, poisoned if i % 2 else y, [f"{i}-{j}" for j in range(16)])
        learning.drain()
    finally:
        stop.set()
        reader.join()
        learning.close()
    steps = [s for batch in learning.take_results() for s in batch]
    assert [s.accepted for s in steps] == [i % 2 == 0 for i in range(30)]
    assert len(scored) > 10 and all(np.isfinite(s).all() for s in scored)
    np.testing.assert_allclose(learner.score_many(X), np.asarray(learner.model(X)).ravel(), atol=1e-5)
