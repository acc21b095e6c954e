"""Scoring on request: the same :class:`~fraudstream.daemon.engine.Engine` step that
Kafka batches take, called from the HTTP API.

An ingested request is one more batch: its transactions update the windows, wait in the
pending store for their labels and are learned from once labelled, exactly as if they had
come through the ``transactions`` topic. A dry run must change *no* state, so it scores on a
scratch copy of the feature state of the entities it names (:meth:`FeaturePipeline.fork`),
whose rows are the ones :meth:`Engine.process` would compute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.step import BatchOutput, parse_label, rfc3339, score_records, time_key
from fraudstream.errors import EventInvalid, FraudstreamError
from fraudstream.features import Transaction
from fraudstream.monitoring.api import EXPLAIN_MAX
from fraudstream.monitoring.exceptions import IngestUnavailable


class RequestInvalid(EventInvalid):
    """One event of a request failed validation; ``index`` says which (0-based)."""

    def __init__(self, index: int, error: EventInvalid):
        super().__init__(error.reason, error.detail, error.field)
        self.index = index
        self.error = error


class ScoringService:
    """What the HTTP API asks of the engine, each call under the daemon's lock.

    ``on_batch(out)`` is called (under the lock) after every ingested batch, so metrics,
    prequential evaluation and drift detection see API traffic as they see Kafka traffic.
    """

    def __init__(self, engine: Engine, lock: threading.RLock | None = None,
                 on_batch: Callable[[BatchOutput], None] | None = None,
                 publish: Callable[[list[tuple[bytes, bytes]]], None] | None = None):
        self.engine = engine
        self.lock = lock if lock is not None else threading.RLock()
        self.on_batch = on_batch
        # A Kafka daemon's ``publish_transactions``: an ingest is then scored dry and produced
        # to the transactions topic, and the loop ingests it with offsets (crash-safe).
        self.publish = publish

    def event_schemas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """JSON Schemas of a transaction and of a label event under the configured field
        names, for the API's OpenAPI document (the parser stays the judge)."""
        spec = self.engine.features.spec
        f = spec.fields
        key = {"type": "string", "minLength": 1}
        when = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
        label = {"type": "integer", "enum": [0, 1]}
        tx = {
            "type": "object",
            "required": [f.transaction_id, f.timestamp, f.customer, f.terminal, f.amount],
            "properties": {
                f.transaction_id: key, f.timestamp: when, f.customer: key, f.terminal: key,
                f.amount: {"type": "number", "minimum": 0, "maximum": spec.max_amount}, f.label: label,
            },
            "additionalProperties": True,
        }
        lab = {
            "type": "object",
            "required": [f.transaction_id, f.label],
            "properties": {f.transaction_id: key, f.label: label, f.timestamp: when},
            "additionalProperties": True,
        }
        return tx, lab

    # -- validation -------------------------------------------------------------------------

    def parse_many(self, events: list[dict[str, Any]]) -> list[Transaction]:
        """Every event as a transaction, or ``RequestInvalid`` for the first bad one: a request
        is taken whole or not at all, so a client can fix it and send it again."""
        parse = self.engine.features.parse
        out = []
        for i, event in enumerate(events):
            try:
                out.append(parse(event))
            except EventInvalid as exc:
                raise RequestInvalid(i, exc) from exc
        return out

    def check_times(self, kind: str, times_us: list[int | None]) -> None:
        """``RequestInvalid`` for the first event time the engine would dead-letter
        (:mod:`fraudstream.daemon.eventtime`), checked in order on a copy of its watermarks.
        Call under the lock, so that the engine's watermarks are those the request meets."""
        clocks, wall, key = self.engine.clocks.fork(), time.time(), time_key(Incoming(kind, {}))
        for i, time_us in enumerate(times_us):
            if time_us is None:
                continue
            try:
                clocks.check(key, time_us, wall)
            except EventInvalid as exc:
                raise RequestInvalid(i, exc) from exc

    # -- calls ----------------------------------------------------------------------------

    def score(self, events: list[dict[str, Any]], dry_run: bool = False,
              explain: bool = False) -> list[dict[str, Any]]:
        """Scores of ``events`` in order: ``transaction_id``, ``score``, ``decision``,
        ``model_version``, ``scored_at`` (and ``top_features`` with ``explain``).

        Ingest (the default) runs them through :meth:`Engine.process`; ``dry_run`` scores
        them on a scratch copy of the feature state and changes nothing.
        """
        txs = self.parse_many(events)
        if not txs:
            return []
        if not dry_run and self.publish is not None:
            return self._score_and_publish(events, txs, explain)
        with self.lock:
            self.check_times(TX, [tx.time_us for tx in txs])
            if dry_run:
                results, X = self._score_dry(txs)
            else:
                out = self.engine.process([Incoming(TX, e) for e in events], received_at=time.time())
                if out.dlq:  # validated above; a record failing here is a bug, not bad input
                    raise RuntimeError(f"validated events were rejected: {out.dlq[0]['reason']}")
                results = [score for _, score in out.scores]
                X = out.scored_X
                if self.on_batch is not None:
                    self.on_batch(out)
            if explain:
                for result, top in zip(results, self.explain_many(X), strict=True):
                    result["top_features"] = top
        return results

    def _score_and_publish(self, events: list[dict[str, Any]], txs: list[Transaction],
                           explain: bool) -> list[dict[str, Any]]:
        """Ingest in a Kafka daemon: score on a scratch copy of the state (as a dry run), then
        produce the transactions, keyed by customer, and return once the broker holds them.

        The loop consumes them like any transaction: windows, pending store, labels and
        learning then carry Kafka offsets, so a crash neither loses nor repeats what they
        teach. The produce runs outside the lock: the loop scores on meanwhile.
        """
        max_bytes = self.engine.settings.kafka.max_event_bytes
        records = []
        for i, (event, tx) in enumerate(zip(events, txs, strict=True)):
            value = orjson.dumps(event)
            if len(value) > max_bytes:  # the loop would dead-letter it: refuse it here instead
                raise RequestInvalid(i, EventInvalid("oversize", f"{len(value)} bytes > {max_bytes}"))
            records.append((tx.customer.encode(), value))
        with self.lock:
            self.check_times(TX, [tx.time_us for tx in txs])
            results, X = self._score_dry(txs)
            if explain:
                for result, top in zip(results, self.explain_many(X), strict=True):
                    result["top_features"] = top
        try:
            self.publish(records)
        except FraudstreamError as exc:
            raise IngestUnavailable(f"transactions not stored in Kafka: {exc}") from exc
        return results

    def _score_dry(self, txs: list[Transaction]) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Score ``txs`` on a fork of the feature state; nothing of the engine changes."""
        engine = self.engine
        scratch = engine.features.fork(txs)
        items: list[Any] = []
        early = engine.early.waiting
        for tx in txs:
            items.append(tx)
            label = tx.label if tx.label is not None else early.get(tx.transaction_id, (None,))[0]
            if label is not None:
                items.append((tx, label))
        X = scratch.normalize(scratch.replay_many(items))
        scores, version, _ = engine.score_with_version(X)
        th = engine.settings.thresholds
        results = score_records([tx.transaction_id for tx in txs], scores, version, rfc3339(time.time()),
                                th.review, th.block)
        return results, X

    def explain_many(self, X: np.ndarray, top: int = 3) -> list[list[dict[str, Any]]]:
        """Per row, the ``top`` features whose occlusion lowers the score most.

        Occlusion: each feature in turn is set to 0, its mean in the normalised space the
        model sees, and the row is scored again by the served model; ``contribution`` is the
        score minus that. One forward pass of ``n * n_features`` rows; no gradients,
        model-agnostic.
        """
        if len(X) > EXPLAIN_MAX:
            raise ValueError(f"explain is limited to {EXPLAIN_MAX} transactions per request")
        X = np.asarray(X, np.float32)
        n, d = X.shape
        score = self.engine.score_served
        base = score(X)
        occluded = np.repeat(X, d, axis=0).reshape(n, d, d)
        occluded[:, np.arange(d), np.arange(d)] = 0.0
        drops = base[:, None] - score(occluded.reshape(n * d, d)).reshape(n, d)
        names = self.engine.features.feature_names
        out = []
        for i in range(n):
            order = np.argsort(-drops[i], kind="stable")[:top]
            out.append([
                {"feature": names[j], "value": round(float(X[i, j]), 6), "contribution": round(float(drops[i, j]), 6)}
                for j in order
            ])
        return out

    def labels(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Label events through :meth:`Engine.process`: each joins its scored transaction
        (or waits for it) and the joined rows train the model in mini-batches."""
        features = self.engine.features
        times: list[int | None] = []
        for i, event in enumerate(events):
            try:
                _, _, when = parse_label(event, features)
            except EventInvalid as exc:
                raise RequestInvalid(i, exc) from exc
            times.append(round(when * 1e6) if when == when else None)
        with self.lock:
            self.check_times(LABEL, times)
            engine = self.engine
            waiting_before = len(engine.early)
            out = engine.process([Incoming(LABEL, e) for e in events], received_at=time.time())
            if out.dlq:
                raise RuntimeError(f"validated label events were rejected: {out.dlq[0]['reason']}")
            if self.on_batch is not None:
                self.on_batch(out)
            return {
                "received": out.labels,
                "joined": 0 if out.joined is None else len(out.joined.ids),
                "waiting_for_transaction": max(0, len(engine.early) - waiting_before),
                "training_steps": sum(1 for s in out.steps if s.accepted),
                "rejected_steps": sum(1 for s in out.steps if not s.accepted),
                "model_version": engine.model_version,
            }

    def model_info(self) -> dict[str, Any]:
        """The model in use and the learning counters, read under the lock (consistent).

        ``model_version`` is the learner's; ``served_version`` the one scores carry (the
        champion's with the lifecycle on, then ``lifecycle`` holds both versions, the
        promotion and rollback counts and each model's prequential metrics).
        """
        with self.lock:
            engine = self.engine
            trainer = engine.trainer
            th = engine.settings.thresholds
            return {
                "model_version": engine.model_version,
                "origin": engine.origin,
                "steps": trainer.steps,
                "rows_learned": trainer.rows_learned,
                "rejected_steps": trainer.rejected_steps,
                "rows_rejected": trainer.rows_rejected,
                "buffered_rows": trainer.buffered,
                "pending": len(engine.pending),
                "early_labels": len(engine.early),
                "training_enabled": engine.settings.training.enabled,
                "thresholds": {"review": th.review, "block": th.block},
                "feature_names": list(engine.features.feature_names),
                "served_version": engine.served_version,
                "lifecycle": None if engine.lifecycle is None else engine.lifecycle.info(engine.model_version),
            }
