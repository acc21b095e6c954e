"""One batch through the whole loop, whatever the source: decode, featurise, score, join, learn.

The Kafka daemon and the file replay both drive this class, so a backtest runs the code
that runs in production. Steps of :meth:`Pipeline.process`:

1. decode and validate every record; a bad one becomes a DLQ record with its reason;
2. features in arrival order: runs of transactions go through the streaming path, label
   events update the label windows as they come (so a label known before a transaction
   counts for it, exactly as in the offline path);
3. one forward pass scores every transaction of the batch; with the model lifecycle on
   (:mod:`fraudstream.daemon.lifecycle`) the champion's scores are served and the learner's
   are kept as the challenger's shadow scores;
4. scored rows wait in the pending store; label events (and inline labels) join them;
5. joined rows feed prequential metrics (score before learn), then the online trainer;
6. with the lifecycle on, the joined rows' two scores judge champion against challenger:
   the challenger may be promoted, or rolled back to the champion.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fraudstream.config import Settings
from fraudstream.daemon.checkpoint import CheckpointInfo, CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming, decode_json, dlq_record
from fraudstream.daemon.eventtime import PartitionClocks
from fraudstream.daemon.lifecycle import PROMOTE, ROLLBACK, ModelLifecycle, ModelRequest, ModelRequests, load_version
from fraudstream.daemon.pending import EarlyLabels, Joined, PendingStore
from fraudstream.daemon.state_io import detach, read_state, write_state
from fraudstream.errors import EventInvalid
from fraudstream.features import FeaturePipeline
from fraudstream.models.online_training import OnlineTrainer, StepResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


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


def parse_label(event: dict[str, Any], id_field: str, label_field: str, time_field: str,
                parse_time: Callable[[Any], int]) -> tuple[str, int, float]:
    """A label event's transaction id, 0/1 label and time (epoch seconds, NaN when absent);
    ``EventInvalid`` naming the field. ``parse_time`` reads the time by the transaction
    rules (:meth:`FeaturePipeline.parse_time`), so a label dated ``1e300`` is refused the same."""
    tx_id = event.get(id_field)
    if tx_id is None:
        raise EventInvalid("missing_field", "label event has no transaction id", id_field)
    if isinstance(tx_id, bool) or not isinstance(tx_id, (str, int)) or tx_id == "":
        raise EventInvalid("wrong_type", f"transaction id {tx_id!r:.40}", id_field)
    label = event.get(label_field)
    if label is None:
        raise EventInvalid("missing_field", "label event has no label", label_field)
    if isinstance(label, bool) or isinstance(label, str) or label not in (0, 1):
        raise EventInvalid("bad_label", f"expected 0 or 1, got {label!r:.40}", label_field)
    when = event.get(time_field)
    if when is None:
        return str(tx_id), int(label), float("nan")
    return str(tx_id), int(label), parse_time(when) / 1e6


class Pipeline:
    """The daemon's state and its per-batch step; see the module docstring for the order."""

    def __init__(self, settings: Settings, features: FeaturePipeline, learner, origin: str = "fresh"):
        self.settings = settings
        self.features = features
        self.learner = learner
        self.origin = origin
        training = settings.training
        n = features.n_features
        self.trainer = OnlineTrainer(
            learner, n, training.minibatch_size, training.replay_size,
            training.replay_ratio, training.replay_fraud_share, seed=settings.model.seed,
            replay_steps=training.replay_steps,
        )
        self.pending = PendingStore(n, training.pending_max, training.pending_ttl_days * 86_400)
        self.early = EarlyLabels(training.pending_max, training.pending_ttl_days * 86_400)
        self.clocks = PartitionClocks(settings.event_time, features.spec.fields.timestamp)
        self.offsets: dict[tuple[str, int], int] = {}
        self.unscored: dict[str, Any] = {}  # transactions seen but not scored (see process)
        self.resumed_seq: int | None = None  # the checkpoint this state came from
        self.base_version = 0
        self.extra_state: dict[str, dict[str, Any]] = {}  # monitoring state restored from a checkpoint
        self._adapt_until: int | None = None
        self.drift_reference: dict[str, Any] | None = None  # feature histograms of the training data
        self._normal: tuple[float, float] = (0.0, 0.0)
        fields = features.spec.fields
        self._id_field, self._label_field, self._time_field = fields.transaction_id, fields.label, fields.timestamp
        self._max_bytes = settings.kafka.max_event_bytes
        self._thresholds = settings.thresholds
        self.background = None  # a BackgroundLearning once learn_in_background() is called
        self._score_after_learning = False
        self._save_model = None  # see _model_for_saving
        # the served model, when it is not the learner itself (see fraudstream.daemon.lifecycle)
        self.lifecycle = (
            ModelLifecycle(settings.lifecycle, learner.model, self.model_version) if settings.lifecycle.enabled else None
        )

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, settings: Settings, artifact: Path | None = None) -> Pipeline:
        """A pipeline from an artifact, or a fresh model built from the config."""
        from fraudstream.models.learner import OnlineLearner

        if artifact is not None:
            from fraudstream.models.artifact import load_artifact

            art = load_artifact(artifact)
            pipe = cls(settings, art.feature_pipeline(), OnlineLearner(art.model, art.params), f"artifact {artifact}")
            pipe.drift_reference = art.metadata.get("drift_reference")
            return pipe
        from fraudstream.models.builder import build_model

        spec = settings.features
        if spec.normalizer.mode != "running":
            # A fresh model has no training data to fit a scale on: learn it from the stream.
            spec = spec.model_copy(update={"normalizer": spec.normalizer.model_copy(update={"mode": "running"})})
        features = FeaturePipeline(spec)
        model = build_model(settings.model, features.n_features, seed=settings.model.seed)
        return cls(settings, features, OnlineLearner(model, settings.model), "fresh model")

    @classmethod
    def restore_or_create(cls, settings: Settings, store: CheckpointStore, artifact: Path | None = None) -> Pipeline:
        """Resume from the newest valid checkpoint; without one, :meth:`create`."""
        info = store.latest_valid()
        if info is None:
            log.info("no valid checkpoint in %s; starting from %s", store.directory, artifact or "a fresh model")
            return cls.create(settings, artifact)
        return cls.from_checkpoint(settings, info)

    @classmethod
    def from_checkpoint(cls, settings: Settings, info: CheckpointInfo) -> Pipeline:
        from fraudstream.models.backend import keras

        from fraudstream.models.learner import OnlineLearner

        path = info.path
        features = FeaturePipeline.from_state_dict(read_state(path, "features"))
        model = keras.saving.load_model(path / "model.keras", safe_mode=True, compile=False)
        learner = OnlineLearner(model, settings.model)
        learner.load_state_dict(read_state(path, "learner"))
        pipe = cls(settings, features, learner, f"checkpoint {path.name}")
        pipe.trainer.load_state_dict(read_state(path, "trainer"))
        pipe.pending.load_state_dict(read_state(path, "pending"))
        pipe.early.load_state_dict(read_state(path, "early_labels"))
        if (path / "event_clocks.json").exists():  # older checkpoints: watermarks start afresh
            pipe.clocks.load_state_dict(read_state(path, "event_clocks"))
        meta = info.meta
        pipe.offsets = {(t, int(p)): int(o) for t, p, o in meta["offsets"]}
        pipe.resumed_seq = info.seq
        pipe.base_version = int(meta.get("base_version", 0))
        if "drift_reference" in meta.get("extra_state", []):
            pipe.drift_reference = read_state(path, "drift_reference")
        pipe._adapt_until = meta.get("adapt_until_step")
        pipe._normal = tuple(meta.get("normal_training", (0.0, 0.0)))
        if pipe._adapt_until is not None:
            pipe.trainer.replay_ratio = float(meta.get("replay_ratio", pipe.trainer.replay_ratio))
        for name in meta.get("extra_state", []):
            pipe.extra_state[name] = read_state(path, name)
        if pipe.lifecycle is not None:
            if meta.get("lifecycle"):
                pipe.lifecycle.load_state_dict(read_state(path, "lifecycle"))
            else:  # written with the lifecycle off: the model it served is the champion
                pipe.lifecycle.champion_version = pipe.model_version
        elif meta.get("lifecycle"):
            log.info("lifecycle off: serving the learner (version %s), not the checkpoint's champion (%s)",
                     pipe.model_version, meta["lifecycle"]["champion_version"])
        log.info(
            "resumed from checkpoint %s: model_version=%s, %d rows learned, %d pending",
            path.name, pipe.model_version, pipe.trainer.rows_learned, len(pipe.pending),
        )
        return pipe

    def adapt(self, lr_multiplier: float, recent_share: float, steps: int, replay_keep: float = 1.0) -> None:
        """After a drift: learn faster and mostly from recent rows, for ``steps`` steps.

        ``recent_share`` is the share of fresh rows in a training batch (the rest is replay).
        ``replay_keep`` is the share of the replay reservoir kept: the rows remembered from
        before the drift teach the old pattern, and replaying them pulls the model back to
        it (frauds, kept longest, most of all). A second call while adapting restarts the
        period from the original settings and keeps the reservoir: its rows are recent.
        The reservoir and the adaptation's end step are saved in checkpoints.
        """
        self.drain()  # the learning thread ends adaptations: not while this one starts
        if self._adapt_until is None:
            self._normal = (self.learner.learning_rate, self.trainer.replay_ratio)
            if replay_keep < 1.0:
                dropped = self.trainer.reservoir.forget(replay_keep)
                log.info("adapting: dropped %d rows learned before the drift from the replay reservoir", dropped)
        lr, ratio = self._normal
        self.learner.set_learning_rate(lr * lr_multiplier)
        self.trainer.replay_ratio = ratio if recent_share <= 0 else (1.0 - recent_share) / recent_share
        self._adapt_until = self.trainer.steps + steps
        log.info("adapting for %d steps: learning rate %.2e, replay ratio %.2f", steps, lr * lr_multiplier, self.trainer.replay_ratio)

    def _end_adaptation_if_due(self) -> None:
        if self._adapt_until is not None and self.trainer.steps >= self._adapt_until:
            lr, ratio = self._normal
            self.learner.set_learning_rate(lr)
            self.trainer.replay_ratio = ratio
            self._adapt_until = None
            log.info("adaptation over: learning rate %.2e, replay ratio %.2f", lr, ratio)

    @property
    def model_version(self) -> int:
        """The learner's version, bumped by every accepted training step."""
        return self.base_version + self.trainer.steps

    @property
    def served_version(self) -> int:
        """The version whose scores are served: the champion's, or the learner's with the lifecycle off."""
        return self.model_version if self.lifecycle is None else self.lifecycle.champion_version

    def score_served(self, X: np.ndarray) -> np.ndarray:
        """Scores of the served model (for dry runs and explanations)."""
        return self.learner.score_many(X) if self.lifecycle is None else self.lifecycle.score_many(X)

    # -- model lifecycle ------------------------------------------------------------------

    def apply_model_request(self, request: ModelRequest, store: CheckpointStore) -> dict[str, Any] | None:
        """Apply a ``fraudstream model promote|rollback`` request; the event, or None if refused.

        ``promote`` serves the learner (or ``to_version`` from a checkpoint); ``rollback``
        serves ``to_version`` and resets the learner to it as well, so learning restarts from
        there. Raises :class:`FraudstreamError` subclasses naming why a request is refused.
        """
        from fraudstream.daemon.lifecycle import ModelRequestInvalid

        lifecycle = self.lifecycle
        if lifecycle is None:
            raise ModelRequestInvalid("the model lifecycle is off (lifecycle.enabled: false)")
        self.drain()  # the learner and the champion change below, not while a step runs
        now = self.pending.now
        why = f"requested {request.requested_at or 'from the command line'}"
        if request.action == PROMOTE and request.to_version is None:
            return lifecycle.promote(self.learner, self.model_version, now, why, trigger="manual")
        if request.to_version == self.model_version:
            weights = self.learner.get_weights()
        elif request.to_version == lifecycle.champion_version:
            weights = lifecycle.champion_weights()
        else:
            weights = load_version(store, request.to_version)
        action = PROMOTE if request.action == PROMOTE else ROLLBACK
        event = lifecycle.set_champion(weights, request.to_version, self.model_version, now, why, action=action)
        if action == ROLLBACK:
            self.learner.set_weights(weights)
            self.learner.reset_optimizer()
        return event

    def handle_model_requests(self, requests: ModelRequests, store: CheckpointStore) -> bool:
        """Apply a waiting request if any (cheap when none); True when the champion changed
        since the last checkpoint, by a request or by the rule, so the caller checkpoints."""
        from fraudstream.errors import FraudstreamError

        request = requests.take()
        if request is not None:
            try:
                event = self.apply_model_request(request, store)
            except FraudstreamError as exc:
                log.warning("model request refused (%s): %s", request.describe(), exc)
                requests.acknowledge(request, "failed", str(exc))
            else:
                requests.acknowledge(request, "applied", f"{request.describe()}: done", event=event,
                                     champion_version=self.served_version, challenger_version=self.model_version)
        return self.lifecycle is not None and self.lifecycle.changed

    # -- the step -------------------------------------------------------------------------

    def process(self, batch: list[Incoming], received_at: float | None = None, score: bool = True) -> BatchOutput:
        """One batch through the loop (see the module docstring).

        ``score=False`` is for a replay's history before its ``--from`` date: the batch
        passes the checks and the feature windows as it would otherwise, but nothing is
        scored, kept pending or learned. Its transactions wait in ``unscored`` so that a
        label arriving later still reaches the label windows, as in a full replay.
        """
        started = time.monotonic()
        out = BatchOutput()
        items: list[Any] = []  # transactions and (transaction, label) in arrival order
        txs, keys, parts = [], [], []
        joins_ids: list[str] = []
        joins_labels: list[int] = []
        in_batch: dict[str, Any] = {}
        labelled: set[str] = set()
        parse, parse_time, check_time = self.features.parse, self.features.parse_time, self.clocks.check
        wall = time.time()  # the time checks' wall clock: one reading per batch
        for record in batch:
            try:
                event = decode_json(record.value, self._max_bytes)
                if record.kind == TX:
                    tx = parse(event)
                    check_time(time_key(record), tx.time_us, wall)
                    txs.append(tx)
                    if record.answered:
                        out.answered.append(len(keys))
                    keys.append(record.key)
                    parts.append(record.partition)
                    items.append(tx)
                    in_batch[tx.transaction_id] = tx
                    # an inline label is known with its transaction; so is one that came early
                    label = tx.label if tx.label is not None else self.early.pop(tx.transaction_id)
                    if label is not None:
                        items.append((tx, label))
                        labelled.add(tx.transaction_id)
                        joins_ids.append(tx.transaction_id)
                        joins_labels.append(label)
                else:
                    tx_id, label, label_time = parse_label(event, self._id_field, self._label_field,
                                                           self._time_field, parse_time)
                    if label_time == label_time:  # a label event's own time, when it has one
                        check_time(time_key(record), round(label_time * 1e6), wall)
                    out.labels += 1
                    tx = in_batch.get(tx_id) or self.pending.context_of(tx_id)
                    if tx is None and (tx := self.unscored.pop(tx_id, None)) is not None:
                        items.append((tx, label))  # the windows learn it; there is no score to learn from
                        continue
                    if tx is None:
                        # wait until event time has passed the label's own time by the TTL
                        self.early.add(tx_id, label, max(label_time, self.pending.now) if label_time == label_time else self.pending.now)
                        continue
                    if tx_id not in labelled:  # a repeated label counts once
                        items.append((tx, label))
                        labelled.add(tx_id)
                    joins_ids.append(tx_id)
                    joins_labels.append(label)
            except EventInvalid as exc:
                out.invalid[exc.reason] += 1
                out.dlq.append(dlq_record(record, exc))
        out.transactions = len(txs)
        X_raw = self.features.replay_many(items) if items else None
        if txs and not score:
            self.unscored.update((tx.transaction_id, tx) for tx in txs if tx.transaction_id not in labelled)
        elif txs:
            X = self.features.normalize(X_raw)
            if self._score_after_learning:
                self.background.drain()
            version = self.served_version  # read first: a step on the learning thread may follow
            scores = self.learner.score_many(X)  # one forward pass for the whole batch
            shadow = None
            if self.lifecycle is not None:  # serve the champion; the learner scores in the shadow
                # scores and version of one champion, even if the learning thread promotes now
                shadow, (scores, version) = scores, self.lifecycle.score_with_version(X)
            times = np.fromiter((tx.time_us for tx in txs), np.int64, len(txs)) / 1e6
            ids = [tx.transaction_id for tx in txs]
            scored_at = rfc3339(received_at if received_at is not None else time.time())
            th = self._thresholds
            for key, tx_id, score, decision in zip(keys, ids, scores.tolist(), decide(scores, th.review, th.block)):
                out.scores.append((key, {
                    "transaction_id": tx_id, "score": round(score, 6), "decision": decision,
                    "model_version": version, "scored_at": scored_at,
                }))
            self.pending.add_many(ids, X, scores, times, txs, shadow, parts)
            out.latest_event_time = float(times.max())
            out.scored, out.scored_times, out.scored_X = scores, times, X
            out.shadow_scored = shadow
        if joins_ids and score:
            joined, out.unmatched_labels = self.pending.pop_many(joins_ids, joins_labels)
            out.joined = joined
            if len(joined.ids):
                if self.background is None:
                    out.steps, out.lifecycle_events = self._learn(joined, self.pending.now)
                else:
                    self.background.submit(self._learn, joined, self.pending.now)
        if self.background is not None:  # what the learning thread finished meanwhile
            for steps, events in self.background.take_results():
                out.steps += steps
                out.lifecycle_events += events
        out.expired = self.pending.expire()
        if out.expired > self.settings.training.pending_bulk_expiry_rows:
            out.bulk_expiry = True
            clocks = ", ".join(f"{p}: {rfc3339(t)}" for p, t in sorted(self.pending.clocks.items()))
            log.warning("%d pending rows expired unlabelled in one batch (more than training.pending_bulk_expiry_rows "
                        "%d); partition clocks %s", out.expired, self.settings.training.pending_bulk_expiry_rows, clocks)
        out.unmatched_labels += self.early.expire(self.pending.now)
        out.seconds = time.monotonic() - started
        return out

    def _learn(self, joined: Joined, now: float) -> tuple[list[StepResult], list[dict[str, Any]]]:
        """Learn from joined rows and judge champion against challenger: inline, or as one
        job of the learning thread (:meth:`learn_in_background`)."""
        events = []
        if self.lifecycle is not None:
            self.lifecycle.observe_many(joined.scores, joined.shadow_scores, joined.labels, joined.times)
        steps = []
        if self.settings.training.enabled:
            steps = self.trainer.add_many(joined.X, joined.labels, joined.ids)
            self._end_adaptation_if_due()
        if self.lifecycle is not None:
            event = self.lifecycle.check(self.learner, self.model_version, now)
            if event is not None:
                events.append(event)
        return steps, events

    def learn_in_background(self, exact: bool = False) -> None:
        """Train on a worker thread from now on (the Kafka daemon; see :mod:`fraudstream.daemon.learning`).

        ``exact`` (the file replay): a batch is scored only once the steps of every batch
        before it are done, so the scores are those of inline learning; a step still runs
        beside the decoding and features of the next batch.
        """
        from fraudstream.daemon.learning import BackgroundLearning

        if self.background is None:
            self.background = BackgroundLearning()
        self._score_after_learning = exact

    def finished_learning(self) -> list[StepResult]:
        """Steps the learning thread finished since the last batch (for an idle loop)."""
        if self.background is None:
            return []
        return [step for steps, _ in self.background.take_results() for step in steps]

    def warm_features(self, path: Path) -> int:
        """Fill the feature windows from a history file (transactions with inline labels, in
        any format ``read_events`` reads), before the first event: for a stream that
        continues the history its model was trained on. Returns the rows taken.

        An artifact carries no per-entity windows (a stream may start anywhere), so a daemon
        started from one scores its first weeks with windows emptier than any the model
        trained on; the feature and score distributions then move as they fill, which the
        drift detectors report. Labels enter the delayed label windows as offline training
        reads them: each counts only once its delay has passed. Invalid rows are skipped.
        """
        from fraudstream.features import read_events

        records = read_events(path, self.settings.features.fields).to_dict("records")
        rows, bad = self.features.parse_many(records)
        if bad:
            log.warning("warming features from %s: %d invalid rows skipped (first: %s)", path, len(bad), bad[0][1])
        rows.sort(key=lambda tx: tx.time_us)
        self.features.update_many(rows)
        self.features.learn_labels([(tx, tx.label) for tx in rows if tx.label is not None])
        log.info("feature windows warmed from %s: %d rows, %s", path, len(rows), self.features.n_entities)
        return len(rows)

    def drain(self) -> None:
        """Wait for the learning thread to be idle, before reading or replacing the learner."""
        if self.background is not None:
            self.background.drain()

    def close(self) -> None:
        """Finish and stop the learning thread (learning goes back inline)."""
        if self.background is not None:
            self.background.close()
            self.background = None
            self._score_after_learning = False

    # -- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(
        self,
        store: CheckpointStore,
        offsets: dict[tuple[str, int], int],
        reason: str,
        extra_state: dict[str, dict[str, Any]] | None = None,
        score: float | None = None,
        tags: list[str] | None = None,
    ) -> CheckpointInfo:
        """Write every part of the state and the offsets it covers as one checkpoint."""
        info = store.save(self.capture_checkpoint(offsets, reason, extra_state, score, tags))
        self.offsets = dict(offsets)
        return info

    def capture_checkpoint(
        self,
        offsets: dict[tuple[str, int], int],
        reason: str,
        extra_state: dict[str, dict[str, Any]] | None = None,
        score: float | None = None,
        tags: list[str] | None = None,
    ) -> Callable[[Path], dict[str, Any]]:
        """Copy the whole state now; the returned ``write(directory) -> meta`` (for
        :meth:`CheckpointStore.save`) writes that copy later, on any thread.

        Copying costs a fraction of writing (no Keras save, no compression, no fsync), so
        the Kafka daemon captures between two batches and writes while it scores on.
        """
        self.drain()  # the learner, trainer and lifecycle hold exactly the rows joined so far
        extra_state = dict(extra_state or {})
        if self.drift_reference is not None:
            extra_state["drift_reference"] = self.drift_reference
        states = {
            "learner": self.learner.state_dict(),
            "features": self.features.state_dict(),
            "trainer": self.trainer.state_dict(),
            "pending": self.pending.snapshot(),  # made columns on the writer's side
            "early_labels": self.early.state_dict(),
            "event_clocks": self.clocks.state_dict(),
            **extra_state,
        }
        lifecycle = None
        if self.lifecycle is not None:
            states["lifecycle"] = self.lifecycle.state_dict()
            lifecycle = self.lifecycle.info(self.model_version)
            self.lifecycle.changed = False
        states = detach(states)
        meta = detach({
            "schema_version": SCHEMA_VERSION,
            "reason": reason,
            "origin": self.origin,
            "model_version": self.model_version,
            "base_version": self.base_version,
            "steps": self.trainer.steps,
            "rows_learned": self.trainer.rows_learned,
            "learned_digest": str(self.trainer.digest),
            "pending": len(self.pending),
            "early_labels": len(self.early),
            "adapt_until_step": self._adapt_until,
            "normal_training": list(self._normal),
            "replay_ratio": self.trainer.replay_ratio,
            "offsets": sorted([t, p, o] for (t, p), o in offsets.items()),
            "extra_state": sorted(extra_state),
            "score": score,
            "tags": tags or [],
            "lifecycle": lifecycle,  # champion version, counters, window metrics, last events
        })
        model = self._model_for_saving()

        def write(tmp: Path) -> dict[str, Any]:
            model.set_weights(states["learner"]["weights"])
            model.save(tmp / "model.keras")
            for name, state in states.items():
                write_state(tmp, name, PendingStore.to_columns(state) if name == "pending" else state)
            return meta

        return write

    def prepare_checkpoints(self) -> None:
        """Build now what the first checkpoint would otherwise build inside its pause."""
        self._model_for_saving()

    def _model_for_saving(self):
        """A twin of the learner's network that ``model.keras`` is written from, so the
        learner trains on while a checkpoint is written."""
        if self._save_model is None:
            from fraudstream.models.backend import keras

            self._save_model = keras.models.clone_model(self.learner.model)
        return self._save_model
