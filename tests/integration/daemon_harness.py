"""Running ``fraudstream run`` as a real process against a real broker, and checking its work.

The daemon tests crash, stop and restart the daemon on purpose, so the daemon always runs
as a subprocess (``python -m fraudstream run``) with its log in a file, is stopped by its
pid, and is killed by the ``daemons`` fixture's finalizer whatever the test did. What the
daemon learned is read back from its newest checkpoint: ``rows_learned`` and
``learned_digest`` in the manifest, and the labelled rows it buffered but has not learned
yet (``buf_ids`` of the ``trainer`` part). Together they must cover every label of the
stream exactly once.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointInfo, CheckpointStore
from fraudstream.daemon.state_io import read_state
from fraudstream.models.online_training import MASK64, id_digest
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import merged_events

REPO = Path(__file__).resolve().parents[2]
DEV_KAFKA = REPO / "dev" / "kafka"

#: The daemons' log level (``debug`` shows the input alignment's pauses).
LOG_LEVEL = os.environ.get("FRAUDSTREAM_TEST_DAEMON_LOG_LEVEL", "info")
#: Environment of every daemon: a wide console so Rich never wraps a log line we look for.
DAEMON_ENV = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

#: The Kafka clients a daemon can run on (``kafka.client``).
CLIENTS = ("kafka-python", "confluent")
#: ``make test-all`` sets it: every daemon proof runs with every client.
ALL_CLIENTS = os.environ.get("FRAUDSTREAM_TEST_ALL_CLIENTS") == "1"


def with_clients(*in_make_test: str) -> pytest.MarkDecorator:
    """Run a daemon test once per Kafka client (the ``daemons`` fixture sets
    ``kafka.client``); ``make test`` runs only the clients named here, ``make test-all`` all.

    The slowest proofs run with one client each in ``make test`` (both clients are proven
    somewhere there), the others with both.
    """
    unknown = set(in_make_test) - set(CLIENTS)
    assert not unknown, f"unknown Kafka clients {unknown}"
    return pytest.mark.parametrize("kafka_client", [
        pytest.param(client, marks=() if ALL_CLIENTS or client in in_make_test
                     else pytest.mark.skip(reason=f"{client}: only in make test-all"))
        for client in CLIENTS
    ])


# -- topics and configuration ------------------------------------------------------------


@dataclass(frozen=True)
class TopicSet:
    transactions: str
    labels: str
    scores: str
    dlq: str

    @property
    def inputs(self) -> list[str]:
        return [self.transactions, self.labels]

    def as_config(self) -> dict[str, str]:
        return {"transactions": self.transactions, "labels": self.labels, "scores": self.scores, "dlq": self.dlq}


def make_topics(
    unique_topic: Callable[..., str],
    tx_partitions: int = 2,
    label_partitions: int = 2,
    dlq_configs: dict[str, str] | None = None,
) -> TopicSet:
    """Fresh input and output topics for one test (deleted by ``unique_topic`` afterwards)."""
    return TopicSet(
        transactions=unique_topic("tx", partitions=tx_partitions),
        labels=unique_topic("labels", partitions=label_partitions),
        scores=unique_topic("scores", partitions=1),
        dlq=unique_topic("dlq", partitions=1, configs=dlq_configs),
    )


def write_config(
    path: Path,
    bootstrap: str,
    topics: TopicSet,
    group_id: str,
    checkpoint_dir: Path,
    *,
    kafka: dict[str, Any] | None = None,
    checkpoints: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """A daemon config file: small checkpoint intervals so a test sees several checkpoints."""
    config = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": topics.as_config(),
            "group_id": group_id,
            "client_id": f"fraudstream-{group_id}",
            "batch_size": 500,
            **(kafka or {}),
        },
        "checkpoints": {
            "directory": str(checkpoint_dir),
            "every_steps": 100,
            "every_seconds": 2.0,
            "keep": 3,
            **(checkpoints or {}),
        },
        "training": {"minibatch_size": 64, **(training or {})},
        "monitoring": {"host": "127.0.0.1", "port": 0},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- the stream ---------------------------------------------------------------------------


@dataclass
class Stream:
    """A simulated stream as records for Kafka: ``(kind, key, value, transaction id)``."""

    events: list[tuple[str, bytes, bytes, str]]
    tx_ids: list[str]
    label_ids: list[str]

    @classmethod
    def simulated(cls, customers: int, terminals: int, days: int, seed: int) -> Stream:
        """Transactions and their label events (7 days later in event time), in event-time order."""
        sim = simulate(SimulatorSettings(customers=customers, terminals=terminals), days, seed)
        customer_of: dict[str, str] = {}
        events, tx_ids, label_ids = [], [], []
        for kind, event in merged_events(sim, inline_labels=False, label_events=True):
            tx_id = event["transaction_id"]
            if kind == "transaction":
                customer_of[tx_id] = event["customer_id"]
                tx_ids.append(tx_id)
            else:
                label_ids.append(tx_id)
            key = customer_of[tx_id].encode()
            events.append((kind, key, json.dumps(event, separators=(",", ":")).encode(), tx_id))
        return cls(events, tx_ids, label_ids)


def producer(bootstrap: str, **options: Any) -> KafkaProducer:
    defaults = {"linger_ms": 20, "batch_size": 256 * 1024, "acks": "all", "client_id": "fraudstream-test-producer"}
    return KafkaProducer(bootstrap_servers=bootstrap, **(defaults | options))


def produce_records(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes]],
    timestamps_ms: Iterable[int | None] | None = None,
    **options: Any,
) -> list[tuple[str, int, int]]:
    """Send ``(topic, key, value)`` records, wait for every ack; their ``(topic, partition, offset)``.

    ``timestamps_ms``: each record's Kafka timestamp (default: now). A backlog stamped with its
    event times is read in event-time order across partitions and topics (see the source's
    alignment), rather than days of event time in one poll of one partition.
    """
    prod = producer(bootstrap, **options)
    records = list(records)
    stamps = [None] * len(records) if timestamps_ms is None else list(timestamps_ms)
    try:
        futures = [prod.send(topic, value=value, key=key, timestamp_ms=stamp)
                   for (topic, key, value), stamp in zip(records, stamps, strict=True)]
        prod.flush(timeout=120)
        coords = []
        for future in futures:
            meta = future.get(timeout=60)
            coords.append((meta.topic, meta.partition, meta.offset))
        return coords
    finally:
        prod.close(timeout=10)


def produce_stream(bootstrap: str, topics: TopicSet, stream: Stream) -> list[tuple[str, int, int]]:
    topic_of = {"transaction": topics.transactions, "label": topics.labels}
    return produce_records(bootstrap, ((topic_of[kind], key, value) for kind, key, value, _ in stream.events))


# -- reading topics -----------------------------------------------------------------------


def _reader(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
        client_id="fraudstream-test-reader",
    )


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics``."""
    consumer = _reader(bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list:
    """Every record of ``topic`` from the beginning to its current end."""
    consumer = _reader(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} has no partitions"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout}s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def scored_ids(bootstrap: str, topic: str) -> list[str]:
    return [json.loads(r.value)["transaction_id"] for r in read_topic(bootstrap, topic)]


def dlq_records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]


def dlq_original(record: dict[str, Any]) -> bytes | None:
    """The original value of a dead-lettered record; None for a tombstone (no value)."""
    if record.get("value_null"):
        assert record["value_b64"] is None, record
        return None
    return base64.b64decode(record["value_b64"])


# -- checkpoints --------------------------------------------------------------------------


def newest_checkpoint(directory: Path) -> CheckpointInfo | None:
    """The newest valid checkpoint; retried when the daemon prunes one while it is read."""
    for _ in range(20):
        try:
            return CheckpointStore(directory).latest_valid()
        except OSError:
            time.sleep(0.1)
    return CheckpointStore(directory).latest_valid()


def checkpoint_offsets(info: CheckpointInfo) -> dict[tuple[str, int], int]:
    return {(t, int(p)): int(o) for t, p, o in info.meta["offsets"]}


def buffered_ids(info: CheckpointInfo) -> list[str]:
    """Labelled rows the trainer holds in its buffer, not learned yet."""
    return list(read_state(info.path, "trainer")["buf_ids"])


def covers(info: CheckpointInfo, ends: dict[tuple[str, int], int]) -> bool:
    offsets = checkpoint_offsets(info)
    return all(offsets.get(tp, 0) == end for tp, end in ends.items())


def assert_learned_exactly_once(info: CheckpointInfo, labelled_ids: list[str]) -> None:
    """Learned + buffered rows are exactly ``labelled_ids``: none lost, none learned twice."""
    learned = int(info.meta["rows_learned"])
    buffered = buffered_ids(info)
    assert len(buffered) == len(set(buffered)), "a labelled row is buffered twice"
    assert learned + len(buffered) == len(labelled_ids), (
        f"{info.name}: {learned} learned + {len(buffered)} buffered != {len(labelled_ids)} labels"
    )
    digest = (int(info.meta["learned_digest"]) + id_digest(buffered)) & MASK64
    assert digest == id_digest(labelled_ids), (
        f"{info.name}: the digest of learned + buffered ids differs from the labelled ids'"
    )


# -- the daemon process -------------------------------------------------------------------


class DaemonExited(AssertionError):
    """The daemon process ended while a test waited for it."""


class Daemon:
    """One ``fraudstream run`` process, its log file and the offset where its log starts."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, client: str = CLIENTS[0]):
        self.proc = proc
        self.log_path = log_path
        self.client = client

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """The log with runs of whitespace collapsed, so a wrapped line still matches."""
        return re.sub(r"\s+", " ", self.log_path.read_text(errors="replace"))

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match]:
        """Wait until ``pattern`` (a regex) matches ``count`` times; fail if the daemon exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(regex.finditer(self.log()))
            if len(found) >= count:
                return found
            if not self.alive():
                raise DaemonExited(
                    f"daemon exited with {self.proc.returncode} while waiting for {pattern!r}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the daemon log after {timeout}s:\n{self.tail()}")
            time.sleep(0.2)

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if not self.alive():
                raise DaemonExited(f"daemon exited with {self.proc.returncode} while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL: a crash at whatever point the daemon is."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait for the clean stop; its exit code."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not stop {timeout}s after SIGTERM:\n{self.tail()}") from None


@dataclass
class DaemonRunner:
    """Starts daemons for one test and kills, by pid, any still running when it ends."""

    workdir: Path
    client: str = "kafka-python"
    started: list[Daemon] = field(default_factory=list)

    def start(
        self, config: Path, name: str | None = None, args: Iterable[str] = (), env: dict[str, str] | None = None,
        client: str | None = None,
    ) -> Daemon:
        """``fraudstream run --config CONFIG [args]`` on ``client`` (else the runner's),
        logging to ``<name>.log``; ``env`` adds to the environment (a secret kept out of the
        config file)."""
        name = name or f"daemon-{len(self.started) + 1}"
        client = client or self.client
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fraudstream", "run", "--config", str(config), "--log-level", LOG_LEVEL, *args],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | DAEMON_ENV | {"FRAUDSTREAM__KAFKA__CLIENT": client} | (env or {}),
                start_new_session=True,
            )
        daemon = Daemon(proc, log_path, client)
        self.started.append(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self.started:
            if daemon.proc.poll() is None:
                try:
                    os.kill(daemon.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                daemon.proc.wait(timeout=30)

    def assert_client_used(self) -> None:
        """Every daemon that got as far as its Kafka source ran on the client it was given."""
        for daemon in self.started:
            log = daemon.log()
            if "Kafka client:" in log:
                assert f"Kafka client: {daemon.client} " in log, f"{daemon.log_path.name} did not run on {daemon.client}"

    def assert_none_running(self) -> None:
        alive = [d.pid for d in self.started if d.proc.poll() is None]
        assert not alive, f"daemon processes still running: {alive}"
        assert not processes_running(str(self.workdir)), "a process started with this test's files still runs"


def processes_running(marker: str) -> list[int]:
    """Pids of ``fraudstream run`` processes whose command line mentions ``marker``
    (the test's directory, where its configs live)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "fraudstream run" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def daemons(tmp_path: Path, kafka_client: str) -> Iterator[DaemonRunner]:
    """``daemons.start(config)`` on ``kafka_client`` (see :func:`with_clients`); every daemon
    still running at the end is SIGKILLed."""
    runner = DaemonRunner(tmp_path, kafka_client)
    try:
        yield runner
    finally:
        runner.close()
    runner.assert_client_used()


# -- a dedicated broker -------------------------------------------------------------------


def free_port_pair() -> int:
    """A port P with P+1 free as well (client and controller ports of a dedicated broker)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports")


@dataclass
class Broker:
    """A broker of its own for a test that stops and restarts it (``dev/kafka``)."""

    port: int
    state_dir: Path
    #: (SSL, SASL_SSL) listener ports: ``dev/kafka start --tls`` adds both listeners.
    tls_ports: tuple[int, int] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(DEV_KAFKA), command, "--port", str(self.port),
             "--controller-port", str(self.port + 1), "--state-dir", str(self.state_dir), *extra],
            capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )

    def start(self, keep_data: bool = False) -> subprocess.CompletedProcess:
        tls = ["--tls", "--ssl-port", str(self.tls_ports[0]), "--sasl-ssl-port", str(self.tls_ports[1])] \
            if self.tls_ports else []
        done = self._run("start", *(["--keep-data"] if keep_data else []), *tls)
        assert done.returncode == 0, f"dev/kafka start failed:\n{done.stderr}"
        return done

    def security(self) -> dict[str, Any]:
        """What ``--tls`` wrote for clients: listeners, CA file, SCRAM user and password file."""
        return json.loads((self.state_dir / "tls" / "security.json").read_text())

    def stop(self) -> None:
        done = self._run("stop", timeout=180)
        assert done.returncode == 0, f"dev/kafka stop failed:\n{done.stderr}"


def seeded(seed: int) -> random.Random:
    return random.Random(seed)
