"""One batch through the whole loop, whatever the source: ingest, featurise and score, join
and learn.

The Kafka daemon, the HTTP-only server and the file replay all drive an :class:`Engine`,
so a backtest runs the code that runs in production. The engine holds the state (feature
windows, learner, trainer, pending store, early labels, event-time clocks, the model
lifecycle) and runs the stages of :mod:`fraudstream.daemon.step` in order:

1. ingest and validate every record; a bad one becomes a DLQ record with its reason;
2. features in arrival order: runs of transactions go through the streaming path, label
   events update the label windows as they come (so a label known before a transaction
   counts for it, exactly as in the offline path); one forward pass scores every
   transaction of the batch. With the model lifecycle on
   (:mod:`fraudstream.daemon.lifecycle`) the champion's scores are served and the
   learner's are kept as the challenger's shadow scores;
3. scored rows wait in the pending store; label events (and inline labels) join them; the
   joined rows feed the online trainer (inline, or on the learning thread), and with the
   lifecycle on their two scores judge champion against challenger.

How the state is written to and read from a checkpoint is :mod:`fraudstream.daemon.snapshot`;
what the daemon decides (drift adaptation, model requests) is :mod:`fraudstream.daemon.policies`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fraudstream.config import Settings
from fraudstream.daemon import snapshot
from fraudstream.daemon.checkpoint import CheckpointInfo, CheckpointStore
from fraudstream.daemon.decode import Incoming
from fraudstream.daemon.eventtime import PartitionClocks
from fraudstream.daemon.lifecycle import ModelLifecycle
from fraudstream.daemon.pending import EarlyLabels, Joined, PendingStore
from fraudstream.daemon.policies import DriftAdaptation
from fraudstream.daemon.step import BatchOutput, Ingested, ingest, rfc3339, score_records
from fraudstream.features import FeaturePipeline, Transaction
from fraudstream.models.online_training import OnlineTrainer, StepResult

log = logging.getLogger(__name__)


class Engine:
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
        self.adaptation = DriftAdaptation(learner, self.trainer)
        self.offsets: dict[tuple[str, int], int] = {}
        self.unscored: dict[str, Transaction] = {}  # transactions seen but not scored (see process)
        self.resumed_seq: int | None = None  # the checkpoint this state came from
        self.base_version = 0
        self.extra_state: dict[str, dict[str, Any]] = {}  # monitoring state restored from a checkpoint
        self.drift_reference: dict[str, Any] | None = None  # feature histograms of the training data
        self.background = None  # a BackgroundLearning once learn_in_background() is called
        self._score_after_learning = False
        self._save_model = None  # see _model_for_saving
        # the served model, when it is not the learner itself (see fraudstream.daemon.lifecycle)
        self.lifecycle = (
            ModelLifecycle(settings.lifecycle, learner.model, self.model_version) if settings.lifecycle.enabled else None
        )

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, settings: Settings, artifact: Path | None = None) -> Engine:
        """An engine from an artifact, or a fresh model built from the config."""
        from fraudstream.models.learner import OnlineLearner

        if artifact is not None:
            from fraudstream.models.artifact import load_artifact

            art = load_artifact(artifact)
            engine = cls(settings, art.feature_pipeline(), OnlineLearner(art.model, art.params), f"artifact {artifact}")
            engine.drift_reference = art.metadata.get("drift_reference")
            return engine
        from fraudstream.models.builder import build_model

        spec = settings.features
        if spec.normalizer.mode != "running":
            # A fresh model has no training data to fit a scale on: learn it from the stream.
            spec = spec.model_copy(update={"normalizer": spec.normalizer.model_copy(update={"mode": "running"})})
        features = FeaturePipeline(spec)
        model = build_model(settings.model, features.n_features, seed=settings.model.seed)
        return cls(settings, features, OnlineLearner(model, settings.model), "fresh model")

    @classmethod
    def restore_or_create(cls, settings: Settings, store: CheckpointStore, artifact: Path | None = None) -> Engine:
        """Resume from the newest valid checkpoint; without one, :meth:`create`."""
        info = store.latest_valid()
        if info is None:
            log.info("no valid checkpoint in %s; starting from %s", store.directory, artifact or "a fresh model")
            return cls.create(settings, artifact)
        return cls.from_checkpoint(settings, info)

    @classmethod
    def from_checkpoint(cls, settings: Settings, info: CheckpointInfo) -> Engine:
        return snapshot.restore(settings, info, cls)

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

    # -- the models -----------------------------------------------------------------------

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

    def score_with_version(self, X: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
        """The served scores of ``X``, the version that made them, and the challenger's
        shadow scores with the lifecycle on (None otherwise): one forward pass per model."""
        version = self.served_version  # read first: a step on the learning thread may follow
        scores = self.learner.score_many(X)
        if self.lifecycle is None:
            return scores, version, None
        # scores and version of one champion, even if the learning thread promotes now
        champion, version = self.lifecycle.score_with_version(X)
        return champion, version, scores

    def adapt(self, lr_multiplier: float, recent_share: float, steps: int, replay_keep: float = 1.0) -> None:
        """After a drift: learn faster and mostly from recent rows, for ``steps`` steps
        (:meth:`DriftAdaptation.start`; saved in checkpoints)."""
        self.drain()  # the learning thread ends adaptations: not while this one starts
        self.adaptation.start(lr_multiplier, recent_share, steps, replay_keep)

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
        got = ingest(batch, out, self.features, self.clocks, self.pending, self.early, self.unscored,
                     self.settings.kafka.max_event_bytes, wall=time.time())
        X_raw = self.features.replay_many(got.items) if got.items else None
        if got.txs and not score:
            self.unscored.update((tx.transaction_id, tx) for tx in got.txs if tx.transaction_id not in got.labelled)
        elif got.txs:
            self._score(got, X_raw, received_at, out)
        if got.join_ids and score:
            self._join_and_learn(got, out)
        if self.background is not None:  # what the learning thread finished meanwhile
            for steps, events in self.background.take_results():
                out.steps += steps
                out.lifecycle_events += events
        self._expire(out)
        out.seconds = time.monotonic() - started
        return out

    def _score(self, got: Ingested, X_raw: np.ndarray, received_at: float | None, out: BatchOutput) -> None:
        """Stage 2: normalise the batch's rows, score them in one pass, keep them pending."""
        X = self.features.normalize(X_raw)
        if self._score_after_learning:
            self.background.drain()
        scores, version, shadow = self.score_with_version(X)
        txs = got.txs
        times = np.fromiter((tx.time_us for tx in txs), np.int64, len(txs)) / 1e6
        ids = [tx.transaction_id for tx in txs]
        th = self.settings.thresholds
        records = score_records(ids, scores, version, rfc3339(received_at if received_at is not None else time.time()),
                                th.review, th.block)
        out.scores = list(zip(got.keys, records))
        self.pending.add_many(ids, X, scores, times, txs, shadow, got.partitions)
        out.latest_event_time = float(times.max())
        out.scored, out.scored_times, out.scored_X = scores, times, X
        out.shadow_scored = shadow

    def _join_and_learn(self, got: Ingested, out: BatchOutput) -> None:
        """Stage 3: labelled rows leave the pending store and are learned from."""
        joined, out.unmatched_labels = self.pending.pop_many(got.join_ids, got.join_labels)
        out.joined = joined
        if len(joined.ids):
            if self.background is None:
                out.steps, out.lifecycle_events = self._learn(joined, self.pending.now)
            else:
                self.background.submit(self._learn, joined, self.pending.now)

    def _expire(self, out: BatchOutput) -> None:
        """Rows and early labels that waited longer than the pending TTL in event time."""
        out.expired = self.pending.expire()
        bulk = self.settings.training.pending_bulk_expiry_rows
        if out.expired > bulk:
            out.bulk_expiry = True
            clocks = ", ".join(f"{p}: {rfc3339(t)}" for p, t in sorted(self.pending.clocks.items()))
            log.warning("%d pending rows expired unlabelled in one batch (more than training.pending_bulk_expiry_rows "
                        "%d); partition clocks %s", out.expired, bulk, clocks)
        out.unmatched_labels += self.early.expire(self.pending.now)

    def _learn(self, joined: Joined, now: float) -> tuple[list[StepResult], list[dict[str, Any]]]:
        """Learn from joined rows and judge champion against challenger: inline, or as one
        job of the learning thread (:meth:`learn_in_background`)."""
        events = []
        if self.lifecycle is not None:
            self.lifecycle.observe_many(joined.scores, joined.shadow_scores, joined.labels, joined.times)
        steps = []
        if self.settings.training.enabled:
            steps = self.trainer.add_many(joined.X, joined.labels, joined.ids)
            self.adaptation.end_if_due()
        if self.lifecycle is not None:
            event = self.lifecycle.check(self.learner, self.model_version, now)
            if event is not None:
                events.append(event)
        return steps, events

    # -- the learning thread ----------------------------------------------------------------

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

    def save_checkpoint(self, store: CheckpointStore, offsets: dict[tuple[str, int], int], reason: str,
                        **options: Any) -> CheckpointInfo:
        """Write every part of the state and the offsets it covers as one checkpoint
        (``options``: as :meth:`capture_checkpoint`)."""
        info = store.save(self.capture_checkpoint(offsets, reason, **options))
        self.offsets = dict(offsets)
        return info

    def capture_checkpoint(self, offsets: dict[tuple[str, int], int], reason: str,
                           **options: Any) -> Callable[[Path], dict[str, Any]]:
        """Copy the whole state now; the returned ``write(directory) -> meta`` (for
        :meth:`CheckpointStore.save`) writes that copy later, on any thread. ``options``
        are those of :func:`fraudstream.daemon.snapshot.capture`: the host's
        ``extra_state``, the prequential ``score`` and ``tags``.

        Copying costs a fraction of writing (no Keras save, no compression, no fsync), so
        the Kafka daemon captures between two batches and writes while it scores on.
        """
        self.drain()  # the learner, trainer and lifecycle hold exactly the rows joined so far
        return snapshot.capture(self, self._model_for_saving(), offsets, reason, **options)

    def prepare_checkpoints(self) -> None:
        """Build now what the first checkpoint would otherwise build inside its pause."""
        self._model_for_saving()

    def _model_for_saving(self):
        """A twin of the learner's network that ``model.keras`` is written from, so the
        learner trains on while a checkpoint is written."""
        if self._save_model is None:
            from fraudstream.models.builder import clone_network

            self._save_model = clone_network(self.learner.model)
        return self._save_model
