"""Pending store (labels join scored rows) and replay reservoir."""

import numpy as np
import pytest

from fraudstream.daemon.pending import PendingStore
from fraudstream.daemon.state_io import read_state, write_state
from fraudstream.features import Transaction
from fraudstream.models.online_training import OnlineTrainer, ReplayReservoir, id_digest


def rows(n, d=3, start=0.0):
    return np.arange(n * d, dtype=np.float32).reshape(n, d) + start


def txs(*ids: str) -> list[Transaction]:
    return [Transaction(tx_id, i, f"c{i}", "m1", 10.0) for i, tx_id in enumerate(ids)]


def test_labels_join_rows_once_and_unmatched_are_counted():
    store = PendingStore(3, capacity=100, ttl_seconds=1000)
    contexts = txs("a", "b", "c")
    store.add_many(["a", "b", "c"], rows(3), np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), contexts)
    joined, unmatched = store.pop_many(["b", "x", "b"], [1, 0, 1])
    assert joined.ids == ["b"] and unmatched == 2
    np.testing.assert_array_equal(joined.X[0], rows(3)[1])
    assert joined.contexts == [contexts[1]] and len(store) == 2


def test_ttl_expires_old_rows_in_event_time():
    store = PendingStore(3, capacity=100, ttl_seconds=10)
    store.add_many(["a", "b"], rows(2), np.zeros(2), np.array([0.0, 5.0]), txs("a", "b"))
    store.add_many(["c"], rows(1), np.zeros(1), np.array([12.0]), txs("c"))
    assert store.expire() == 1 and "a" not in store and store.expired == 1


def test_capacity_evicts_oldest():
    store = PendingStore(3, capacity=4, ttl_seconds=1e9)
    ids = [f"t{i}" for i in range(6)]
    store.add_many(ids, rows(6), np.zeros(6), np.arange(6.0), txs(*ids))
    assert len(store) == 4 and "t0" not in store and "t1" not in store and store.evicted == 2


def test_pending_state_round_trip(tmp_path):
    store = PendingStore(3, capacity=100, ttl_seconds=1000)
    contexts = [
        Transaction("a", 1_000_000, "c1", "m1", 12.5),
        Transaction("b", 2_000_000, "c2", "m2", 3.0, 1),
        Transaction("c", 3_000_000, "c3", "m1", 99.99, 0, {"mcc": "5411"}),
    ]
    store.add_many(["a", "b", "c"], rows(3), np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), contexts)
    store.pop_many(["b"], [1])
    write_state(tmp_path, "pending", store.state_dict())
    again = PendingStore(3, capacity=100, ttl_seconds=1000)
    again.load_state_dict(read_state(tmp_path, "pending"))
    joined, _ = again.pop_many(["c", "a"], [1, 0])
    assert joined.ids == ["c", "a"] and joined.contexts == [contexts[2], contexts[0]]
    assert all(type(c) is Transaction and type(c.transaction_id) is str for c in joined.contexts)
    np.testing.assert_array_equal(joined.X, rows(3)[[2, 0]])


def test_reservoir_keeps_fraud_share_and_samples_both_classes():
    res = ReplayReservoir(size=100, n_features=3, fraud_share=0.5, seed=1)
    y = np.zeros(10_000)
    y[::100] = 1
    res.add_many(rows(10_000), y)
    assert res.filled == [50, 50]
    _, ys = res.sample(2000)
    assert 0.4 < ys.mean() < 0.6


class CountingLearner:
    """Records what it was taught; returns NaN loss when told to, like an exploding step."""

    def __init__(self):
        self.w = [np.zeros(2)]
        self.seen = 0
        self.explode = False

    def learn_many_guarded(self, X, y):
        self.seen += len(X)
        if self.explode:
            return float("nan"), False  # rolled back: the weights stay
        self.w = [self.w[0] + 1]
        return 0.5, True


def test_trainer_minibatches_digest_and_guard():
    learner = CountingLearner()
    trainer = OnlineTrainer(learner, n_features=3, minibatch_size=4, replay_size=10, replay_ratio=1.0)
    ids = [f"t{i}" for i in range(10)]
    steps = trainer.add_many(rows(10), np.zeros(10), ids)
    assert [s.accepted for s in steps] == [True, True] and trainer.buffered == 2
    assert trainer.rows_learned == 8 and trainer.digest == id_digest(ids[:8])
    learner.explode = True
    steps = trainer.add_many(rows(2), np.ones(2), ["t10", "t11"])
    assert [s.accepted for s in steps] == [False]
    assert trainer.rejected_steps == 1 and trainer.rows_learned == 8
    np.testing.assert_array_equal(learner.w[0], np.full(2, 2.0))  # two steps kept


def test_digest_is_order_independent():
    assert id_digest(["a", "b", "c"]) == id_digest(["c", "a", "b"]) != id_digest(["a", "b"])


def test_replay_steps_add_replay_only_passes():
    learner = CountingLearner()
    trainer = OnlineTrainer(learner, n_features=3, minibatch_size=4, replay_size=10, replay_ratio=0.0, replay_steps=2)
    trainer.add_many(rows(4), np.zeros(4), [f"t{i}" for i in range(4)])
    # one fresh step of 4 rows, then two replay-only steps of 4 rows from the reservoir
    assert learner.seen == 12 and trainer.steps == 1 and trainer.rows_learned == 4


def test_waiting_rows_are_not_walked_by_the_garbage_collector():
    import gc

    store = PendingStore(3, capacity=100, ttl_seconds=1000)
    contexts = [Transaction(f"t{i}", i, "c1", "m1", 1.5) for i in range(10)]
    store.add_many([c.transaction_id for c in contexts], rows(10), np.zeros(10), np.arange(10.0), contexts)
    gc.collect()
    assert not any(gc.is_tracked(c) for c in store.context if c is not None)
    assert store.context_of("t3") == contexts[3] and type(store.context_of("t3")) is Transaction


def add_row_by_row(reservoir, X, y):
    """Algorithm R one row at a time: what ``ReplayReservoir.add_many`` must equal."""
    for row, label in zip(X, np.asarray(y).astype(int)):
        store = reservoir.rows[label]
        if len(store) == 0:
            continue
        reservoir.seen[label] += 1
        if reservoir.filled[label] < len(store):
            slot = reservoir.filled[label]
            reservoir.filled[label] += 1
        else:
            slot = int(reservoir.rng.integers(reservoir.seen[label]))
            if slot >= len(store):
                continue
        store[slot] = row


@pytest.mark.parametrize("size,fraud_share", [(40, 0.5), (7, 0.2), (30, 0.0), (30, 1.0), (1, 0.5)])
def test_reservoir_adds_a_batch_exactly_as_row_after_row(size, fraud_share):
    rng = np.random.default_rng(size)
    a = ReplayReservoir(size, n_features=3, fraud_share=fraud_share, seed=5)
    b = ReplayReservoir(size, n_features=3, fraud_share=fraud_share, seed=5)
    for n in rng.integers(0, 90, size=40):
        X = rng.normal(size=(n, 3)).astype(np.float32)
        y = (rng.random(n) < 0.3).astype(np.float32)
        a.add_many(X, y)
        add_row_by_row(b, X, y)
        assert a.sample(5)[0].tobytes() == b.sample(5)[0].tobytes()  # draws in between, as a step makes
    assert a.filled == b.filled and a.seen == b.seen
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    for label in (0, 1):
        np.testing.assert_array_equal(a.rows[label], b.rows[label])
