"""The long-running Kafka daemon: poll, process, produce, checkpoint, resume, stop cleanly.

One thread owns the loop. The Kafka client runs the rebalance hooks on a thread of its own
or inside the loop's poll; either way they take the same (reentrant) lock as the loop, so a
revocation checkpoints between two batches, never inside one.

Order of a checkpoint (see :mod:`fraudstream.daemon.checkpoint`): copy the state and the
offsets between two batches; then, on a writer thread while the loop scores on, flush the
producer (scores and DLQ records of every processed input are acknowledged) and write the
copy atomically; only then does the loop commit the offsets to Kafka. Training steps run on
a thread of their own (:mod:`fraudstream.daemon.learning`), so no batch waits for one. A crash at any point replays the
inputs after the last durable checkpoint: their scores may be produced twice, but their
labels are learned exactly once, because the learner's state is rolled back with them.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.consumers.clients import check_connection, kafka_sink, kafka_source
from fraudstream.consumers.exceptions import KafkaMemberFenced, SinkFailed
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.host import EngineHost
from fraudstream.daemon.lifecycle import ModelRequests
from fraudstream.daemon.policies import handle_model_requests
from fraudstream.monitoring.daemon_monitor import DaemonMonitor

log = logging.getLogger(__name__)

#: Header of a transaction the HTTP API produced after answering it with its score: the loop
#: ingests it (windows, pending store, learning, under the checkpoint's offsets) but does not
#: produce its score, which the client already has.
ANSWERED_HEADER = ("fraudstream-answered", b"http")

#: No connection to any broker for this long counts as the broker being away (one warning);
#: shorter gaps are the client reconnecting an idle connection.
BROKER_AWAY_AFTER_S = 2.0

#: How long the loop waits for the offset commit of one of its own checkpoints. The checkpoint
#: holds the offsets, so a commit the broker cannot take now is left to the next checkpoint
#: instead of stopping the loop for the client's 30 s request timeout (as it did in an
#: outage). Revocation and stop commits wait longer: other daemons start from them.
LOOP_COMMIT_TIMEOUT_MS = 2_000

#: Bytes of the original value a trimmed DLQ record still carries (base64 of the start).
DLQ_TRIMMED_BYTES = 64 * 1024


def trimmed_dlq_record(dead: dict[str, Any]) -> dict[str, Any]:
    """``dead`` with only the first ``DLQ_TRIMMED_BYTES`` of its value, plus its size and sha256.

    Sent instead of the whole record when the producer or the DLQ topic (``max.message.bytes``)
    refuses that as too large, so the event is still dead-lettered, with its reason and source
    coordinates, instead of stopping the daemon or vanishing.
    """
    raw = base64.b64decode(dead["value_b64"])
    return dead | {
        "value_b64": base64.b64encode(raw[:DLQ_TRIMMED_BYTES]).decode(),
        "value_truncated": True,
        "value_bytes": len(raw),
        "value_sha256": hashlib.sha256(raw).hexdigest(),
    }


def group_instance_id(settings: Settings) -> str | None:
    """This daemon's static group member id: ``kafka.group_instance_id``, where ``auto``
    means the host name plus a hash of the checkpoint directory's absolute path.

    The directory is locked to one daemon, so that id is unique in the group and the same
    after every restart: the broker hands a restarted daemon its partitions back at once,
    without waiting for the session timeout that drops a dead dynamic member.
    """
    chosen = settings.kafka.group_instance_id
    if chosen != "auto":
        return chosen
    directory = Path(settings.checkpoints.directory).expanduser().resolve()
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())[:200] or "host"
    return f"{host}-{hashlib.sha256(str(directory).encode()).hexdigest()[:12]}"


def freeze_heap(collect: bool = True) -> None:
    """Collect, then exempt every surviving object from later cyclic collections.

    TensorFlow and Keras leave millions of long-lived objects; a full (generation 2)
    collection walks them all and stops the loop for about half a second. Frozen objects
    are still freed by reference counting; only cycles among them would outlive the
    process, and the daemon's own long-lived state holds none. Run at start, and (without
    the collection, which would stop the loop) after the first checkpoint, by when the first
    training step and save have created what they keep; full collections then only walk
    what is newer.
    """
    if collect:
        gc.collect()
    gc.freeze()


class Daemon(EngineHost):
    """``fraudstream run``: the Kafka loop around a :class:`~fraudstream.daemon.engine.Engine`.

    :meth:`open` makes one: it locks the checkpoint directory, resumes (or creates) the
    engine and starts the HTTP server; :meth:`run` then owns the loop until a signal.
    """

    @classmethod
    def open(cls, settings: Settings, artifact: Path | None = None, monitor: DaemonMonitor | None = None,
             warm_from: Path | None = None) -> Daemon:
        """Lock ``checkpoints.directory``, resume from its newest valid checkpoint (or start
        from ``artifact``, or a fresh model), warm the windows from ``warm_from`` when no
        checkpoint was resumed, and serve the monitor's metrics and the scoring API over
        HTTP when it asks to be served."""
        store = CheckpointStore(settings.checkpoints.directory, settings.checkpoints.keep)
        store.lock()
        try:
            engine = Engine.restore_or_create(settings, store, artifact)
            if warm_from is not None:
                if engine.resumed_seq is None:
                    engine.warm_features(warm_from)
                else:  # a checkpoint's windows already hold what it has seen
                    log.info("resumed from a checkpoint: %s not read", warm_from)
        except BaseException:
            store.unlock()
            raise
        daemon = cls(settings, store, engine, monitor)
        if monitor is not None and monitor.serve:
            daemon.start_http()
        return daemon

    def __init__(self, settings: Settings, store: CheckpointStore, engine: Engine,
                 monitor: DaemonMonitor | None = None):
        """A daemon around ``engine``, whose checkpoints go to ``store`` (locked by the caller)."""
        self.settings = settings
        self.store = store
        self.engine = engine
        self.monitor = monitor
        self.http: Any = None  # a monitoring.server.MonitoringServer once start_http() ran
        self.offsets: dict[tuple[str, int], int] = dict(self.engine.offsets)
        # Resumed from an older checkpoint than the newest on disk (that one is corrupt):
        # offsets committed since may belong to what the newer one learned.
        newest = next(iter(self.store.list(verify=False)), None)
        self._fell_back = self.engine.resumed_seq is not None and newest is not None and newest.seq > self.engine.resumed_seq
        self.stopping = threading.Event()
        self.lock = threading.RLock()
        self.assigned: set[tuple[str, int]] = set()
        self.checkpoints_written = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fraudstream-checkpoint")
        self._writing: tuple | None = None  # (future, offsets, reason, started, capture seconds)
        self._steps_at_checkpoint = self.engine.trainer.steps
        self._last_checkpoint = time.monotonic()
        topics = settings.kafka.topics
        self._kind_of = {topics.transactions: TX, topics.labels: LABEL}
        self.group_instance_id = group_instance_id(settings)
        self._first_scores = True
        self.source: Any = None  # consumers.clients.kafka_source
        self.closing = False
        self.rebuilds = 0
        self._unassigned_since: float | None = None
        self._broker_lost_at: float | None = None  # the client has had no broker connection since
        self._broker_away = False  # announced: one warning when it goes, one line when it is back
        self.longest_stall_s = 0.0  # the longest loop iteration: how long the stream went unserved
        self.fenced: KafkaMemberFenced | None = None  # another daemon took our static member id
        self._requested: tuple[str, list[str]] | None = None
        self.model_requests = ModelRequests(self.store.directory)  # `fraudstream model promote|rollback`
        if monitor is not None:
            monitor.attach(self)
        self.sink: Any = None  # consumers.clients.kafka_sink

    def start_http(self) -> None:
        """Serve ``/metrics``, ``/healthz``, ``/readyz`` and the scoring API (``/v1``)."""
        from fraudstream.daemon.service import ScoringService
        from fraudstream.monitoring.api import add_scoring_routes
        from fraudstream.monitoring.server import MonitoringServer, create_app

        monitor, mon = self.monitor, self.settings.monitoring
        app = create_app(monitor.metrics, monitor.readiness)
        # a Kafka daemon makes HTTP transactions durable in its transactions topic first
        service = ScoringService(self.engine, self.lock, lambda out: monitor.on_batch(self, out, None),
                                 publish=self.publish_transactions)
        add_scoring_routes(app, service, mon.api_token, mon.api_max_body_bytes)
        self.http = MonitoringServer(app, mon.host, mon.port)
        self.http.start()
        log.info("monitoring on %s (/metrics, /healthz, /readyz)", self.http.url)

    def stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None

    # -- what the monitor reads (fraudstream.monitoring.host.MonitoredHost) -------------------

    def assigned_partitions(self) -> set[tuple[str, int]]:
        return self.assigned  # read-only by contract: no copy, which a rebalance could change mid-way

    def broker_reachable(self) -> bool:
        return self.source is not None and self.source.connected()

    def consumer_lag(self) -> Mapping[tuple[str, int], int] | None:
        return None if self.source is None else self.source.lag(self.offsets)

    # -- rebalance hooks (worker thread) ----------------------------------------------------

    def _on_revoked(self, partitions: list) -> None:
        if self.closing:
            return  # the stop checkpoint already covers these partitions
        with self.lock:
            log.info("partitions revoked: %s; checkpointing", sorted(map(tuple, partitions)))
            self.checkpoint(reason="revoked")
            self.assigned -= {(tp.topic, tp.partition) for tp in partitions}

    def _on_assigned(self, partitions: list) -> None:
        with self.lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                self.assigned.add(key)
                if key in self.offsets:
                    self.source.seek(tp.topic, tp.partition, self.offsets[key])
                    log.info("assigned %s[%d]: seek to checkpointed offset %d", *key, self.offsets[key])
                elif self._fell_back:
                    # Every checkpoint holds the position of every partition assigned when it
                    # was written, so the resumed state has read nothing of this one (the topic
                    # grew since). Its committed offset came from the newer, corrupt checkpoint:
                    # starting there would skip what only that one had learned.
                    self.source.seek_to_beginning(tp.topic, tp.partition)
                    log.warning("assigned %s[%d]: not in the resumed checkpoint, which is older than the "
                                "newest (corrupt) one; reading it from the beginning", *key)
                else:
                    log.info("assigned %s[%d]: no checkpointed offset, using committed/reset", *key)

    # -- the loop -----------------------------------------------------------------------

    def _install_signals(self) -> None:
        def stop(signum, _frame):
            log.info("signal %s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self, max_seconds: float | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``max_seconds``); checkpoint and commit on the way out."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        kafka = self.settings.kafka
        check_connection(kafka)  # a wrong password, CA or protocol fails here, naming the cause
        self.sink = kafka_sink(kafka)
        self.source = self._new_source()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.engine.learn_in_background()  # scoring never waits for a training step
        self.engine.prepare_checkpoints()  # not in the first checkpoint's pause
        # Hand the GIL over within 1 ms instead of 5: the learning and checkpoint threads
        # run Python between TensorFlow calls, and the loop should not wait on them.
        sys.setswitchinterval(0.001)
        freeze_heap()
        log.info("daemon started: model_version=%s, %d pending, group %s as %s", self.engine.model_version,
                 len(self.engine.pending), kafka.group_id, self.group_instance_id or "a dynamic member")
        try:
            while not self.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                began = time.monotonic()
                self._watch_broker(began)
                self._watch_assignment()
                records = self.source.poll()
                with self.lock:
                    if records:
                        self._process(records)
                    else:
                        self._report_learning()
                    if self.assigned - self.offsets.keys():
                        self._note_positions()
                    if self.monitor is not None:  # may adapt training after a drift: under the lock
                        self.act_on_drift(self.monitor.on_idle(self))
                    if handle_model_requests(self.engine, self.model_requests, self.store) and self._requested is None:
                        self._requested = ("lifecycle", ["lifecycle"])  # a promotion or rollback: keep it
                    self._finish_checkpoint(wait=False)
                    if self._writing is None:  # one at a time: a due or requested one waits its turn
                        if self._requested is not None:
                            reason, tags = self._requested
                            self._requested = None
                            self.checkpoint(reason=reason, tags=tags, wait=False)
                        elif self._checkpoint_due():
                            self.checkpoint(reason="interval", wait=False)
                self.longest_stall_s = max(self.longest_stall_s, time.monotonic() - began)
        finally:
            with self.lock:
                self.checkpoint(reason="stop")  # the learner is drained: every step is reported
                self._report_learning()
                self.closing = True
            self.engine.close()
            self._writer.shutdown()
            self.source.close()
            self.stop_http()  # before the sink: an HTTP ingest in flight still gets produced
            self.sink.close()
            self.store.unlock()
            if self.fenced is None:
                log.info("daemon stopped cleanly; longest loop iteration %.1fs", self.longest_stall_s)
        if self.fenced is not None:
            raise self.fenced  # stopped with its state checkpointed; the other daemon goes on

    def _new_source(self) -> Any:
        kafka = self.settings.kafka
        self._unassigned_since = time.monotonic()
        return kafka_source(kafka, [kafka.topics.transactions, kafka.topics.labels], self._on_revoked, self._on_assigned,
                            group_instance_id=self.group_instance_id)

    def _watch_broker(self, now: float) -> None:
        """One WARNING when no broker has been reachable for ``BROKER_AWAY_AFTER_S``, one INFO
        when one is again. The client's own per-reconnect errors stay below CRITICAL (see the
        CLI's logging set-up), so these two lines are what an outage leaves in the log."""
        if self.source.connected():
            if self._broker_away:
                log.info("Kafka broker reachable again after %.1fs; longest loop iteration so far %.1fs",
                         now - self._broker_lost_at, self.longest_stall_s)
            self._broker_lost_at, self._broker_away = None, False
        elif self._broker_lost_at is None:
            self._broker_lost_at = now
        elif not self._broker_away and now - self._broker_lost_at >= BROKER_AWAY_AFTER_S:
            self._broker_away = True
            log.warning("Kafka broker unreachable (%s) for %.1fs; scoring resumes when it is back",
                        self.settings.kafka.bootstrap_servers, now - self._broker_lost_at)

    def _watch_assignment(self) -> None:
        """Rebuild the consumer when it has held no partition for too long.

        kafka-python 3.0 can be left outside its group after a rebalance that revokes every
        partition (the group goes empty while the consumer polls on). State and offsets live
        in this process and its checkpoints, so a new consumer that rejoins and seeks to
        them continues exactly where the old one stopped.
        """
        if self.assigned or self.settings.kafka.rejoin_after_s is None:
            # Off by default: with more daemons than partitions, having none is legitimate and
            # a rebuild would force a group-wide rebalance.
            self._unassigned_since = None
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > self.settings.kafka.rejoin_after_s:
            log.warning("no partition assigned for %.0fs: rebuilding the Kafka consumer", now - self._unassigned_since)
            with self.lock:
                self.closing = True  # the old consumer's revocation needs no checkpoint
                try:
                    self.source.close()
                except Exception as exc:  # a broken client may fail to close; it is dropped anyway
                    log.warning("closing the old consumer failed: %s", exc)
                self.closing = False
                self.source = self._new_source()
            self.rebuilds += 1

    def _process(self, records: list) -> None:
        batch = [
            Incoming(self._kind_of[r.topic], r.value, r.topic, r.partition, r.offset, r.key,
                     answered=bool(r.headers) and ANSWERED_HEADER in r.headers)
            for r in records
        ]
        out = self.engine.process(batch, received_at=time.time())
        topics = self.settings.kafka.topics
        answered = set(out.answered)
        for i, (key, score) in enumerate(out.scores):
            if i not in answered:
                self.sink.send_json(topics.scores, score, key)
        for dead in out.dlq:
            # an input too large to carry whole still goes, with its reason, size and digest
            big = len(dead["value_b64"] or "") > DLQ_TRIMMED_BYTES  # None: a tombstone
            self.sink.send_json(topics.dlq, dead, if_too_large=trimmed_dlq_record(dead) if big else None)
        for r in records:
            self.offsets[(r.topic, r.partition)] = r.offset + 1
        if self.monitor is not None:
            self.monitor.on_batch(self, out, records)
        if self._first_scores and out.scores:
            self._first_scores = False  # how long a (re)start leaves the stream unscored
            log.info("first scores of this run: %d transactions", len(out.scores))

    def publish_transactions(self, records: list[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` transactions the HTTP API scored, and return once the
        broker holds them (``acks=all``): the loop then ingests them like any transaction,
        under the checkpoint's offsets. Called from API threads, without the loop's lock.
        ``SinkFailed`` when they are not durable (or the producer is not up yet).
        """
        sink = self.sink
        if sink is None:
            raise SinkFailed("the Kafka producer is not started yet")
        sink.send_and_wait(self.settings.kafka.topics.transactions, records, headers=[ANSWERED_HEADER])

    def _note_positions(self) -> None:
        """Record where assigned partitions that delivered nothing yet stand, once known.

        A checkpoint then holds every assigned partition, read or idle, and a partition
        missing from the one resumed is one it never saw (see ``_on_assigned``).
        """
        for topic, partition in self.assigned - self.offsets.keys():
            position = self.source.resolved_position(topic, partition)
            if position is not None:
                self.offsets[(topic, partition)] = position

    def _report_learning(self) -> None:
        """Steps the learning thread finished while no batch came to carry them."""
        steps = self.engine.finished_learning()
        if steps and self.monitor is not None:
            self.monitor.on_learned(self, steps)

    def _checkpoint_due(self) -> bool:
        cfg = self.settings.checkpoints
        if self.offsets == self.engine.offsets:
            return False  # nothing consumed since the last checkpoint
        return (
            self.engine.trainer.steps - self._steps_at_checkpoint >= cfg.every_steps
            or time.monotonic() - self._last_checkpoint >= cfg.every_seconds
        )

    def request_checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        """Checkpoint after the batch in hand (e.g. keep the model as it was at a drift)."""
        self._requested = (reason, tags or [])

    def checkpoint(self, reason: str, tags: list[str] | None = None, wait: bool = True) -> bool:
        """Capture state + offsets, write them durably, then commit the offsets. Caller holds the lock.

        Capturing copies the state between two batches; writing it (Keras save, arrays,
        manifest, fsync) and flushing the producer take longer, so with ``wait=False`` (the
        loop's own checkpoints) they run on a writer thread while the loop scores on, and
        :meth:`_finish_checkpoint` commits the offsets once the checkpoint is durable.
        Revocation and stop wait: their offsets must be committed before the partitions go.
        False when the producer could not flush (the checkpoint is postponed).
        """
        self._finish_checkpoint(wait=True)  # one at a time, in order (a failed one is counted)
        started = time.monotonic()
        offsets = dict(self.offsets)
        monitor = self.monitor
        self.flush_monitor()
        write = self.engine.capture_checkpoint(
            offsets, reason=reason, tags=tags,
            extra_state=monitor.state_dict() if monitor is not None else None,
            score=monitor.checkpoint_score() if monitor is not None else None,
        )
        self._last_checkpoint = time.monotonic()
        self._steps_at_checkpoint = self.engine.trainer.steps
        captured_s = self._last_checkpoint - started
        self._writing = (self._writer.submit(self._write_checkpoint, write), offsets, reason, started, captured_s)
        return self._finish_checkpoint(wait=True) if wait else True

    def _write_checkpoint(self, write) -> Any:
        """On the writer thread: outputs of every processed input durable, then the state."""
        self.sink.flush()
        return self.store.save(write)

    def _finish_checkpoint(self, wait: bool) -> bool:
        """Commit the offsets of a checkpoint once it is written (or wait for that).

        True when no checkpoint is in flight any more and the last one succeeded.
        """
        if self._writing is None:
            return True
        future, offsets, reason, started, captured_s = self._writing
        if not wait and not future.done():
            return False
        self._writing = None
        try:
            info = future.result()
        except SinkFailed as exc:
            log.warning("checkpoint (%s) postponed: %s", reason, exc)
            if self.monitor is not None:
                self.monitor.on_checkpoint_failed(self, exc)
            return False
        self.engine.offsets = offsets
        try:
            committed = self.source.commit(offsets, timeout_ms=None if wait else LOOP_COMMIT_TIMEOUT_MS)
        except KafkaMemberFenced as exc:  # the checkpoint is durable; its offsets are not ours to commit
            self.fenced, committed = exc, False  # run() stops and raises it: the CLI's error line
            self.stopping.set()
        self.checkpoints_written += 1
        if self.checkpoints_written == 1:
            freeze_heap(collect=False)  # the first step and save have traced and imported what they need
        seconds = time.monotonic() - started
        log.info(
            "checkpoint %s (%s): %d steps, %d rows learned, committed=%s, %.3fs (%.3fs in the loop)",
            info.name, reason, info.meta["steps"], info.meta["rows_learned"], committed, seconds, captured_s,
        )
        if self.monitor is not None:
            self.monitor.on_checkpoint(self, info, seconds)
        return True
