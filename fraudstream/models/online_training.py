"""Online training policy: mini-batches of fresh labelled rows, mixed with a replay reservoir.

Fresh labelled rows are buffered until a mini-batch is full (64 by default). Each step
trains on the fresh rows plus ``replay_ratio`` times as many rows drawn from a reservoir of
older labelled rows, in which frauds keep their own share so that they are remembered long
after they stop arriving. A step whose loss or weights are not finite is rolled back.

The trainer also keeps the evidence of exactly-once learning: how many rows it learned and
an order-independent digest of their transaction ids (the sum of a 64-bit hash of each id,
modulo 2**64), which a checkpoint stores and a test compares with the stream.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MASK64 = (1 << 64) - 1


def id_digest(ids: list[str]) -> int:
    """Order-independent digest of a multiset of ids: sum of 64-bit hashes mod 2**64."""
    total = 0
    for tx_id in ids:
        total += int.from_bytes(hashlib.blake2b(tx_id.encode(), digest_size=8).digest(), "little")
    return total & MASK64


class Learner(Protocol):
    """What the trainer needs of a learner (``fraudstream.models.learner.OnlineLearner``)."""

    def learn_many_guarded(self, X: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
        """One step, kept only if its loss and weights are finite: ``(loss, accepted)``."""
        ...


class ReplayReservoir:
    """Two uniform reservoirs (Algorithm R): one for legitimate rows, one for frauds.

    Frauds get ``fraud_share`` of the capacity, so at a 1% fraud rate they stay in the
    reservoir about fifty times longer than legitimate rows.

    >>> r = ReplayReservoir(size=4, n_features=2, fraud_share=0.5, seed=0)
    >>> r.add_many(np.ones((10, 2), np.float32), np.array([0] * 9 + [1]))
    >>> r.filled
    [2, 1]
    """

    def __init__(self, size: int, n_features: int, fraud_share: float = 0.5, seed: int = 0):
        self.size = size
        self.n_features = n_features
        self.fraud_share = fraud_share
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        fraud_cap = int(round(self.size * self.fraud_share))
        caps = (self.size - fraud_cap, fraud_cap)
        self.rows = [np.zeros((cap, self.n_features), np.float32) for cap in caps]
        self.filled = [0, 0]
        self.seen = [0, 0]
        self.rng = np.random.default_rng(self.seed)

    def __len__(self) -> int:
        return self.filled[0] + self.filled[1]

    def add_many(self, X: np.ndarray, y: np.ndarray) -> None:
        """Algorithm R per class, row after row, in a few numpy calls: a row of a full
        reservoir takes slot ``integers(seen)`` if that is inside it. The draws are made in
        row order across both classes, in one call, which draws exactly what one call per
        row would (same numbers, same generator state after)."""
        labels = np.asarray(y).astype(int)
        plans = []
        for label in (0, 1):
            store = self.rows[label]
            at = np.flatnonzero(labels == label)
            if len(store) == 0 or len(at) == 0:
                continue
            seen = self.seen[label] + np.arange(1, len(at) + 1)
            n_fill = min(len(at), len(store) - self.filled[label])
            plans.append((label, at, seen, n_fill))
            self.seen[label] += len(at)
        drawn = np.concatenate([at[n_fill:] for _, at, _, n_fill in plans]) if plans else np.zeros(0, int)
        if len(drawn) == 0:
            slots_drawn = np.zeros(0, np.int64)
        else:
            highs = np.concatenate([seen[n_fill:] for _, _, seen, n_fill in plans])
            order = np.argsort(drawn, kind="stable")  # the rows' own order
            slots_drawn = np.empty(len(drawn), np.int64)
            slots_drawn[order] = self.rng.integers(highs[order])
        taken = 0
        for label, at, _, n_fill in plans:
            store = self.rows[label]
            slots = np.concatenate([self.filled[label] + np.arange(n_fill),
                                    slots_drawn[taken:taken + len(at) - n_fill]])
            taken += len(at) - n_fill
            self.filled[label] += n_fill
            keep = slots < len(store)
            slots, rows = slots[keep], at[keep]
            # a slot written twice keeps the later row, as row after row would
            last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
            store[slots[last]] = X[rows[last]]

    def forget(self, keep_share: float, labels: tuple[int, ...] = (0, 1)) -> int:
        """Keep a random ``keep_share`` of the remembered rows of ``labels`` and drop the rest;
        returns how many were dropped.

        After a concept drift the old rows teach the old pattern, and replaying them pulls the
        model back to it. The kept rows count as the only ones seen, so the rows learned from
        now on refill the freed capacity first and then share it uniformly with the kept ones.

        >>> r = ReplayReservoir(size=8, n_features=1, fraud_share=0.5, seed=0)
        >>> r.add_many(np.ones((8, 1), np.float32), np.array([0, 1] * 4))
        >>> r.forget(0.5, labels=(0,)), r.filled
        (2, [2, 4])
        """
        if not 0.0 <= keep_share <= 1.0:
            raise ValueError(f"keep_share must be in [0, 1], got {keep_share}")
        dropped = 0
        for label in labels:
            n = self.filled[label]
            kept = int(round(n * keep_share))
            if kept < n:
                pick = np.sort(self.rng.choice(n, size=kept, replace=False))
                self.rows[label][:kept] = self.rows[label][pick]
                dropped += n - kept
            self.filled[label] = self.seen[label] = min(kept, n)
        return dropped

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` rows drawn uniformly, with replacement, from both reservoirs together."""
        n0, n1 = self.filled
        if k <= 0 or n0 + n1 == 0:
            return np.zeros((0, self.n_features), np.float32), np.zeros(0, np.float32)
        pick = self.rng.integers(n0 + n1, size=k)
        is_fraud = pick >= n0
        X = np.empty((k, self.n_features), np.float32)
        X[~is_fraud] = self.rows[0][pick[~is_fraud]]
        X[is_fraud] = self.rows[1][pick[is_fraud] - n0]
        return X, is_fraud.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "legit": self.rows[0][: self.filled[0]],
            "fraud": self.rows[1][: self.filled[1]],
            "seen": list(self.seen),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        for label, key in ((0, "legit"), (1, "fraud")):
            rows = np.asarray(state[key], np.float32).reshape(-1, self.n_features)
            rows = rows[: len(self.rows[label])]
            self.rows[label][: len(rows)] = rows
            self.filled[label] = len(rows)
        self.seen = [int(s) for s in state["seen"]]
        self.rng.bit_generator.state = state["rng"]


@dataclass
class StepResult:
    loss: float
    rows: int  # fresh labelled rows
    accepted: bool
    replayed: int = 0  # rows drawn from the reservoir


class OnlineTrainer:
    """Buffers labelled rows into mini-batches and trains the learner with replay."""

    def __init__(
        self,
        learner: Learner,
        n_features: int,
        minibatch_size: int = 64,
        replay_size: int = 20_000,
        replay_ratio: float = 1.0,
        replay_fraud_share: float = 0.5,
        seed: int = 0,
        replay_steps: int = 0,
    ):
        self.learner = learner
        self.n_features = n_features
        self.minibatch_size = minibatch_size
        self.replay_ratio = replay_ratio
        self.replay_steps = replay_steps
        self.reservoir = ReplayReservoir(replay_size, n_features, replay_fraud_share, seed)
        self._reset()

    def _reset(self) -> None:
        self.buf_X = np.zeros((0, self.n_features), np.float32)
        self.buf_y = np.zeros(0, np.float32)
        self.buf_ids: list[str] = []
        self.steps = 0
        self.rows_learned = 0
        self.rows_rejected = 0
        self.rejected_steps = 0
        self.digest = 0
        self.last_loss = float("nan")

    @property
    def buffered(self) -> int:
        return len(self.buf_ids)

    def add_many(self, X: np.ndarray, y: np.ndarray, ids: list[str]) -> list[StepResult]:
        """Buffer labelled rows; train one step per full mini-batch. Returns the steps taken."""
        self.buf_X = np.concatenate([self.buf_X, np.asarray(X, np.float32)])
        self.buf_y = np.concatenate([self.buf_y, np.asarray(y, np.float32)])
        self.buf_ids.extend(ids)
        results = []
        n = self.minibatch_size
        while len(self.buf_ids) >= n:
            X_new, y_new, ids_new = self.buf_X[:n], self.buf_y[:n], self.buf_ids[:n]
            self.buf_X, self.buf_y, self.buf_ids = self.buf_X[n:], self.buf_y[n:], self.buf_ids[n:]
            results.append(self._step(X_new, y_new, ids_new))
        return results

    def _step(self, X_new: np.ndarray, y_new: np.ndarray, ids: list[str]) -> StepResult:
        X_old, y_old = self.reservoir.sample(int(round(len(ids) * self.replay_ratio)))
        X = np.concatenate([X_new, X_old])
        y = np.concatenate([y_new, y_old])
        # a step whose loss or weights are not finite is rolled back before anything
        # (maybe scoring on another thread) sees its weights
        loss, accepted = self.learner.learn_many_guarded(X, y)
        if not accepted:
            self.rejected_steps += 1
            self.rows_rejected += len(ids)
            log.warning("rejected a training step: loss=%s, weights restored", loss)
            return StepResult(loss, len(ids), accepted=False, replayed=len(y_old))
        self.reservoir.add_many(X_new, y_new)
        for _ in range(self.replay_steps):  # extra passes over remembered rows only
            X_old, y_old = self.reservoir.sample(len(y))
            if not len(y_old):
                break
            extra, extra_accepted = self.learner.learn_many_guarded(X_old, y_old)
            if not extra_accepted:
                self.rejected_steps += 1
                log.warning("rejected a replay step: loss=%s, weights restored", extra)
                break
        self.steps += 1
        self.rows_learned += len(ids)
        self.digest = (self.digest + id_digest(ids)) & MASK64
        self.last_loss = loss
        return StepResult(loss, len(ids), accepted=True, replayed=len(y_old))

    def state_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "buf_X": self.buf_X,
            "buf_y": self.buf_y,
            "buf_ids": list(self.buf_ids),
            "steps": self.steps,
            "rows_learned": self.rows_learned,
            "rows_rejected": self.rows_rejected,
            "rejected_steps": self.rejected_steps,
            "digest": str(self.digest),
            "last_loss": self.last_loss,
            "reservoir": self.reservoir.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        self.buf_X = np.asarray(state["buf_X"], np.float32).reshape(-1, self.n_features)
        self.buf_y = np.asarray(state["buf_y"], np.float32)
        self.buf_ids = list(state["buf_ids"])
        self.steps = int(state["steps"])
        self.rows_learned = int(state["rows_learned"])
        self.rows_rejected = int(state["rows_rejected"])
        self.rejected_steps = int(state["rejected_steps"])
        self.digest = int(state["digest"])
        self.last_loss = float(state["last_loss"])
        self.reservoir.load_state_dict(state["reservoir"])
