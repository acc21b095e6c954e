"""The stages of one batch, as the roles of a scaled-out daemon will run them.

:meth:`fraudstream.daemon.engine.Engine.process` runs them in one process, in this order:

1. **ingest and validate** (:func:`ingest`): decode and check every record; a bad one
   becomes a DLQ record with its reason. Transactions and labels keep their arrival order,
   and each label is routed: to a transaction of this batch or of the pending store (a
   join), to a transaction seen before scoring began (windows only), or to wait for its
   transaction (an early label);
2. **featurise and score**: the feature windows see the batch in arrival order, and one
   forward pass scores its transactions (:func:`score_records` makes the score records);
3. **join and learn**: labelled rows leave the pending store and feed the online trainer;
4. **checkpoint** (:mod:`fraudstream.daemon.snapshot`), between two batches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fraudstream.daemon.decode import TX, Incoming, decode_json, dlq_record
from fraudstream.daemon.eventtime import PartitionClocks
from fraudstream.daemon.pending import EarlyLabels, Joined, PendingStore
from fraudstream.errors import EventInvalid
from fraudstream.features import FeaturePipeline, Transaction
from fraudstream.models.online_training import StepResult


@dataclass
class BatchOutput:
    """What one batch produced, for the sink and for monitoring."""

    scores: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # indices of scores already answered over HTTP
    dlq: list[dict[str, Any]] = field(default_factory=list)
    invalid: Counter = field(default_factory=Counter)
    transactions: int = 0
    labels: int = 0
    unmatched_labels: int = 0
    expired: int = 0
    joined: Joined | None = None
    bulk_expiry: bool = False  # more than training.pending_bulk_expiry_rows expired in this batch
    scored: np.ndarray | None = None  # scores of this batch's transactions (before learning)
    scored_times: np.ndarray | None = None
    scored_X: np.ndarray | None = None
    steps: list[StepResult] = field(default_factory=list)
    shadow_scored: np.ndarray | None = None  # the challenger's scores (lifecycle on)
    lifecycle_events: list[dict[str, Any]] = field(default_factory=list)  # promotions, rollbacks
    latest_event_time: float | None = None
    seconds: float = 0.0


def decide(scores: np.ndarray, review: float, block: float) -> list[str]:
    return np.where(scores >= block, "block", np.where(scores >= review, "review", "approve")).tolist()


def rfc3339(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_key(record: Incoming) -> tuple[str, int]:
    """The partition whose watermark a record's event time is checked against (replay and
    the HTTP API have no topic: their kind stands for it)."""
    return (record.topic or record.kind, record.partition)


def parse_label(event: dict[str, Any], features: FeaturePipeline) -> tuple[str, int, float]:
    """A label event's transaction id, 0/1 label and time (epoch seconds, NaN when absent);
    ``EventInvalid`` naming the field. The label and the time are read by the feature
    module's rules (:meth:`FeaturePipeline.label_value`, :meth:`FeaturePipeline.parse_time`),
    so a label dated ``1e300`` is refused as a transaction would be."""
    fields = features.spec.fields
    tx_id = event.get(fields.transaction_id)
    if tx_id is None:
        raise EventInvalid("missing_field", "label event has no transaction id", fields.transaction_id)
    if isinstance(tx_id, bool) or not isinstance(tx_id, (str, int)) or tx_id == "":
        raise EventInvalid("wrong_type", f"transaction id {tx_id!r:.40}", fields.transaction_id)
    label = event.get(fields.label)
    if label is None:
        raise EventInvalid("missing_field", "label event has no label", fields.label)
    label = features.label_value(label)
    when = event.get(fields.timestamp)
    if when is None:
        return str(tx_id), label, float("nan")
    return str(tx_id), label, features.parse_time(when) / 1e6


def score_records(ids: list[str], scores: np.ndarray, version: int, scored_at: str,
                  review: float, block: float) -> list[dict[str, Any]]:
    """The score records of a batch (the ``scores`` topic and the HTTP API answer alike)."""
    return [
        {"transaction_id": tx_id, "score": round(score, 6), "decision": decision,
         "model_version": version, "scored_at": scored_at}
        for tx_id, score, decision in zip(ids, scores.tolist(), decide(scores, review, block))
    ]


@dataclass
class Ingested:
    """A batch decoded, validated and routed (stage 1)."""

    items: list[Any] = field(default_factory=list)  # transactions and (transaction, label), in arrival order
    txs: list[Transaction] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)  # Kafka key of each transaction
    partitions: list[int] = field(default_factory=list)
    join_ids: list[str] = field(default_factory=list)  # labels that join a scored transaction
    join_labels: list[int] = field(default_factory=list)
    labelled: set[str] = field(default_factory=set)  # transactions of this batch whose label is known


def ingest(batch: list[Incoming], out: BatchOutput, features: FeaturePipeline, clocks: PartitionClocks,
           pending: PendingStore, early: EarlyLabels, unscored: dict[str, Transaction], max_bytes: int,
           wall: float) -> Ingested:
    """Stage 1: decode and check every record and route each label (see the module
    docstring). Bad records go to ``out.dlq`` with their reason; labels are counted in
    ``out.labels``. ``wall`` is the wall clock of the event-time checks, one reading a batch."""
    got = Ingested()
    in_batch: dict[str, Transaction] = {}
    parse, check_time = features.parse, clocks.check
    for record in batch:
        try:
            event = decode_json(record.value, max_bytes)
            if record.kind == TX:
                tx = parse(event)
                check_time(time_key(record), tx.time_us, wall)
                got.txs.append(tx)
                if record.answered:
                    out.answered.append(len(got.keys))
                got.keys.append(record.key)
                got.partitions.append(record.partition)
                got.items.append(tx)
                in_batch[tx.transaction_id] = tx
                # an inline label is known with its transaction; so is one that came early
                label = tx.label if tx.label is not None else early.pop(tx.transaction_id)
                if label is not None:
                    got.items.append((tx, label))
                    got.labelled.add(tx.transaction_id)
                    got.join_ids.append(tx.transaction_id)
                    got.join_labels.append(label)
            else:
                tx_id, label, label_time = parse_label(event, features)
                if label_time == label_time:  # a label event's own time, when it has one
                    check_time(time_key(record), round(label_time * 1e6), wall)
                out.labels += 1
                tx = in_batch.get(tx_id) or pending.context_of(tx_id)
                if tx is None and (tx := unscored.pop(tx_id, None)) is not None:
                    got.items.append((tx, label))  # the windows learn it; there is no score to learn from
                    continue
                if tx is None:
                    # wait until event time has passed the label's own time by the TTL
                    early.add(tx_id, label, max(label_time, pending.now) if label_time == label_time else pending.now)
                    continue
                if tx_id not in got.labelled:  # a repeated label counts once
                    got.items.append((tx, label))
                    got.labelled.add(tx_id)
                got.join_ids.append(tx_id)
                got.join_labels.append(label)
        except EventInvalid as exc:
            out.invalid[exc.reason] += 1
            out.dlq.append(dlq_record(record, exc))
    out.transactions = len(got.txs)
    return got
